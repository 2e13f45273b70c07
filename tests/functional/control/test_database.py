"""The inventory database on SQLite and PostgreSQL: migrations, WAL, big
numbers, cascades, lost-update protection."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.orm.exc import StaleDataError

from vmdr.control.db.engine import current_revision, head_revision, open_database, session_factory
from vmdr.control.db.models import Disk, Machine, ProtectedItem
from vmdr.model.lifecycle import Direction, Site, State

TiB = 1 << 40


def test_open_migrates_to_head_and_is_idempotent(database_url: str) -> None:
    engine = open_database(database_url)
    assert current_revision(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {"machines", "disks", "protected_items", "jobs", "job_events", "vcenters"} <= tables
    engine.dispose()
    again = open_database(database_url)  # a restart: nothing to do, nothing lost
    assert current_revision(again) == head_revision()
    again.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path: object) -> None:
    engine = open_database(f"sqlite:///{tmp_path}/vmdr.db")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_machines_disks_items_round_trip(database_url: str) -> None:
    engine = open_database(database_url)
    Session = session_factory(engine)
    with Session.begin() as s:
        vm = Machine(name="web-01", guest_os="Ubuntu", enable_uuid=True)
        vm.disks = [Disk(unit=0, capacity=10 * TiB, path="[vmfs-01] web-01/web-01.vmdk")]
        s.add(vm)
        s.flush()
        item = ProtectedItem(machine_id=vm.id, state=State.PROTECTED, active_site=Site.PRIMARY,
                             direction=Direction.PRIMARY_TO_RECOVERY)  # fmt: skip
        s.add(item)
        vm_id = vm.id
    with Session() as s:
        vm = s.get(Machine, vm_id)
        assert vm is not None and vm.disks[0].capacity == 10 * TiB
        s.delete(vm.disks[0])
        s.commit()
        assert s.query(Disk).count() == 0
    engine.dispose()


def test_concurrent_updates_of_an_item_cannot_overwrite_each_other(database_url: str) -> None:
    engine = open_database(database_url)
    Session = session_factory(engine)
    with Session.begin() as s:
        vm = Machine(name="db-01")
        s.add(vm)
        s.flush()
        item = ProtectedItem(machine_id=vm.id, state=State.PROTECTED, active_site="primary",
                             direction="primaryToRecovery")  # fmt: skip
        s.add(item)
        s.flush()
        item_id = item.id
    a, b = Session(), Session()
    first, second = a.get(ProtectedItem, item_id), b.get(ProtectedItem, item_id)
    assert first is not None and second is not None
    first.state = State.PLANNED_FAILOVER
    a.commit()
    second.state = State.DISABLING_PROTECTION  # based on a stale read
    with pytest.raises(StaleDataError):
        b.commit()
    a.close()
    b.close()
    with Session() as s:
        assert s.get(ProtectedItem, item_id).state == State.PLANNED_FAILOVER  # type: ignore[union-attr]
    engine.dispose()
