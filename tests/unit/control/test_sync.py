"""sync_disks, the cloud-bound sync every protect operation and cycle runs:
through a VM snapshot, only what changed block tracking names, or the whole
disks compared; what it stores so the next sync knows where to start.

vCenter is a scripted ``VmOperations`` here (the simulator's answers have
their own tests, tests/functional/providers/test_cbt.py); the disks and
replicas are real sparse files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from vmdr.control.db.models import Machine, ProtectedItem
from vmdr.control.jobs import StepContext
from vmdr.control.workflows.context import Workflows
from vmdr.control.workflows.to_cloud import sync_disks, take_point
from vmdr.model.errors import VmdrError
from vmdr.model.lifecycle import Direction, Site, State
from vmdr.providers.vsphere.cbt import CycleSnapshot

from .items import Events
from .outside import MemoryPlane, MemoryVms

MiB = 1 << 20
BLOCK = 64 << 10
FILE = "[vmfs-01] web-01/web-01.vmdk"


class TrackingVms(MemoryVms):
    """Answers each cycle with the next scripted snapshot; records what it was asked."""

    def __init__(self, *answers: CycleSnapshot) -> None:
        super().__init__("web-01")
        self.answers = list(answers)
        self.asked: list[tuple[bool, dict[str, str]]] = []
        self.removed = 0

    def cycle_snapshot(self, name: str, cycle: str, quiesce: bool, since: dict[str, str]) -> Any:
        self.asked.append((quiesce, dict(since)))
        return self.answers.pop(0)

    def remove_cycle_snapshots(self, name: str) -> int:
        self.removed += 1
        return 1


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    folder = tmp_path / "vmfs-01" / "web-01"
    folder.mkdir(parents=True)
    flat = folder / "web-01-flat.vmdk"
    with open(flat, "wb") as f:
        f.truncate(4 * MiB)
        f.write(os.urandom(MiB))  # the first MiB holds data
    return flat


def protected(wf: Workflows, plane: MemoryPlane, tmp_path: Path) -> str:
    with wf.sessions.begin() as s:
        machine = Machine(name="web-01")
        s.add(machine)
        s.flush()
        row = ProtectedItem(
            machine_id=machine.id, state=State.PROTECTED, settings={},
            active_site=Site.PRIMARY, direction=Direction.PRIMARY_TO_RECOVERY,
        )  # fmt: skip
        s.add(row)
        s.flush()
        ident = row.id
    replica = f"file://{tmp_path / 'replica.img'}"
    disk = {"unit": 0, "file": FILE, "capacity": 4 * MiB, "address": "scsi0:0", "blob": replica}
    wf.update_settings(ident, vm="web-01", vcenter="vc-1", disks=[disk])
    return ident


@pytest.fixture
def plane(tmp_path: Path) -> MemoryPlane:
    return MemoryPlane(datastores={"vmfs-01": tmp_path / "vmfs-01"})


def answer(change_id: str, areas: list[tuple[int, int]] | None, label: str = "crash") -> Any:
    return CycleSnapshot(label, {FILE: change_id}, {FILE: areas}, [])


def sync(wf: Workflows, ident: str, step: str = "sync", **kw: Any) -> None:
    sync_disks(wf, StepContext(f"job-{step}", {"item": ident}, Events()), step, **kw)


def test_the_first_sync_compares_whole_and_the_next_reads_only_what_changed(
    wf: Workflows, plane: MemoryPlane, tmp_path: Path, disk: Path
) -> None:
    vms = TrackingVms(answer("52 aa/0", None, "app"), answer("52 aa/3", [(2 * MiB, 100)]))
    wf.vcenters = vms
    ident = protected(wf, plane, tmp_path)
    replica = tmp_path / "replica.img"

    sync(wf, ident, "initial-replication", quiesce=True)
    assert vms.asked[0] == (True, {FILE: ""})  # nothing known yet
    assert replica.read_bytes() == disk.read_bytes()
    settings = wf.settings(ident)
    assert settings.change_ids == {"0": "52 aa/0"}
    last = settings.last_sync
    assert last is not None and (last.how, last.consistency) == ({"0": "differential"}, "app")

    with open(disk, "r+b") as f:  # the guest writes; tracking names the area
        f.seek(2 * MiB)
        f.write(b"x" * 100)
    sync(wf, ident)
    assert vms.asked[1] == (False, {FILE: "52 aa/0"})  # from where the last sync left
    assert replica.read_bytes() == disk.read_bytes()
    last = wf.settings(ident).last_sync
    assert last is not None and last.how == {"0": "changed"}
    assert last.read == {"0": BLOCK}  # one 64 KiB block read of a 4 MiB disk
    assert wf.settings(ident).change_ids == {"0": "52 aa/3"}
    assert vms.removed == 2  # every cycle's snapshot removed


def test_a_differential_sync_ignores_the_stored_change_ids(
    wf: Workflows, plane: MemoryPlane, tmp_path: Path, disk: Path
) -> None:
    vms = TrackingVms(answer("52 aa/0", None), answer("52 aa/9", None))
    wf.vcenters = vms
    ident = protected(wf, plane, tmp_path)
    sync(wf, ident)
    sync(wf, ident, "delta-sync", differential=True)
    assert vms.asked[1] == (False, {FILE: ""})
    assert wf.settings(ident).change_ids == {"0": "52 aa/9"}


def test_a_sync_that_fails_keeps_the_last_good_change_ids_and_removes_its_snapshot(
    wf: Workflows, plane: MemoryPlane, tmp_path: Path, disk: Path
) -> None:
    vms = TrackingVms(answer("52 aa/0", None), answer("52 aa/5", [(8 * MiB, BLOCK)]))
    wf.vcenters = vms
    ident = protected(wf, plane, tmp_path)
    sync(wf, ident)
    disk.unlink()  # the datastore went away under the second cycle
    with pytest.raises(VmdrError) as err:
        sync(wf, ident)
    assert err.value.code == "VMDR-E0203", err.value  # DiskNotFound
    assert wf.settings(ident).change_ids == {"0": "52 aa/0"}
    assert vms.removed == 2


def test_points_are_labelled_by_the_snapshot_not_by_the_operation(
    wf: Workflows, plane: MemoryPlane, tmp_path: Path, disk: Path, monkeypatch: Any
) -> None:
    from vmdr.control.db.models import RecoveryPoint
    from vmdr.providers.azure import pageblob

    vms = TrackingVms(answer("52 aa/0", None, "crash"), answer("52 aa/1", [], "app"))
    wf.vcenters = vms
    ident = protected(wf, plane, tmp_path)
    monkeypatch.setattr(pageblob, "snapshot", lambda url: f"{url}?snapshot=1")

    def point(job: str) -> str:
        take_point(wf, StepContext(job, {"item": ident}, Events()), job)
        with wf.sessions() as s:
            return str(s.query(RecoveryPoint).filter_by(item_id=ident, tag=job).one().kind)

    sync(wf, ident, "initial-replication", quiesce=True)  # asked, but the guest did not quiesce
    assert point("job-initial-replication") == "crash"
    sync(wf, ident, "final-sync", quiesce=True)  # the guest quiesced
    assert point("job-final-sync") == "app"
    # A point of disks no snapshot of its own job held (the cloud disks
    # before a failback) does not borrow the last sync's label.
    assert point("job-before-failback") == "crash"
