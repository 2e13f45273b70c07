"""Replication samples, on SQLite and PostgreSQL: what a heartbeat and a
cycle record, the byte deltas across a process-server restart, retention."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from vmdr.control.db.engine import open_database, session_factory
from vmdr.control.db.models import Job, Machine, ProtectedItem, RecoveryPoint, ReplicationSample
from vmdr.control.workflows import metrics


@pytest.fixture
def db(database_url: str) -> Iterator[tuple[Any, str]]:
    """Sessions of a fresh database holding one protected item."""
    engine = open_database(database_url)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        machine = Machine(name="web-01")
        s.add(machine)
        s.flush()
        item = ProtectedItem(
            machine_id=machine.id, state="Protected", active_site="recovery",
            direction="recoveryToPrimary", settings={},
        )  # fmt: skip
        s.add(item)
        s.flush()
        item_id = item.id
    yield sessions, item_id
    engine.dispose()


def beat(
    item: str, sent: tuple[int, int], lags: tuple[float | None, float | None]
) -> dict[str, Any]:
    return {
        "replications": [
            {"id": f"fb-{item}-d0", "sent_bytes": sent[0], "lag_seconds": lags[0]},
            {"id": f"fb-{item}-d1", "sent_bytes": sent[1], "lag_seconds": lags[1]},
            {"id": "someone-else", "sent_bytes": 999, "lag_seconds": 1.0},
        ]
    }


def test_heartbeats_give_the_worst_lag_and_the_bytes_sent_since_the_last(
    db: tuple[Any, str],
) -> None:
    sessions, item = db
    first = beat(item, (100, 50), (2.0, 5.0))
    second = beat(item, (1100, 550), (1.0, None))  # one disk has no point yet
    restarted = beat(item, (300, 0), (3.0, 4.0))  # counters start again from zero
    with sessions.begin() as s:
        assert metrics.record_heartbeat(s, {}, first, 30.0) == 1
        assert metrics.record_heartbeat(s, first, second, 30.0) == 1
        assert metrics.record_heartbeat(s, second, restarted, 15.0) == 1
        assert metrics.record_heartbeat(s, {}, beat("no-such-item", (1, 1), (1, 1)), 1.0) == 0
    with sessions() as s:
        got = metrics.samples(s, item)
    assert [(x["rpo_seconds"], x["bytes"], x["seconds"]) for x in got] == [
        (5.0, 150, 30.0),
        (None, 1500, 30.0),
        (4.0, 300, 15.0),
    ]
    assert got[0]["bytes_per_second"] == 5.0
    assert all(x["direction"] == "recoveryToPrimary" for x in got)


def test_a_cycle_records_the_rpo_reached_before_its_point(db: tuple[Any, str]) -> None:
    sessions, item = db
    now = time.time()
    with sessions.begin() as s:
        for seq, t in ((1, now - 400), (2, now - 100)):
            for unit in (0, 1):
                s.add(RecoveryPoint(item_id=item, disk_unit=unit, seq=seq, time=t))
        job = Job(kind="replicate", item_id=item)
        s.add(job)
        s.flush()
        metrics.record_cycle(s, item, job.id, moved=4096)
    with sessions() as s:
        (sample,) = metrics.samples(s, item)
    assert sample["rpo_seconds"] == 300.0
    assert sample["bytes"] == 4096 and sample["direction"] == "primaryToRecovery"
    assert 0 <= sample["seconds"] < 60


def test_samples_beyond_the_retention_are_dropped_and_since_filters(db: tuple[Any, str]) -> None:
    sessions, item = db
    now = time.time()
    with sessions.begin() as s:
        metrics.record(
            s, item, "primaryToRecovery", 10.0, 1, 1.0, now - metrics.RETENTION_SECONDS - 5
        )
        metrics.record(s, item, "primaryToRecovery", 20.0, 2, 1.0, now - 60)
        metrics.record(s, item, "primaryToRecovery", 30.0, 3, 1.0, now)
    with sessions() as s:
        kept = s.scalars(select(ReplicationSample.rpo_seconds).order_by(ReplicationSample.time))
        assert list(kept) == [20.0, 30.0]
        assert [x["rpo_seconds"] for x in metrics.samples(s, item, since=now - 30)] == [30.0]
