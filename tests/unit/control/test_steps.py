"""Workflow steps below the end-to-end tier: each runs against the real
database (a SQLite file) with the outside world in memory (``outside.py``),
and is checked for what it asked of that world and what it left on the item.
The real compute, process server and vSphere keep their functional tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vmdr.control.db.engine import open_database, session_factory
from vmdr.control.db.models import Machine, ProtectedItem
from vmdr.control.jobs import JobKind, StepContext
from vmdr.control.workflows.context import Workflows
from vmdr.control.workflows.to_onprem import onprem_kinds
from vmdr.model.errors import VmdrError
from vmdr.model.lifecycle import Direction, Site, State

from .outside import MemoryPlane

BLOB = "pageblob://acct/vmdr-replicas/{item}-disk{unit}"


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str | None]] = []

    def progress(self, job_id: str, step: str, done_bytes: int, message: str | None) -> None:
        self.seen.append((step, done_bytes, message))


@pytest.fixture
def plane() -> MemoryPlane:
    return MemoryPlane()


@pytest.fixture
def wf(tmp_path: Path, plane: MemoryPlane) -> Iterator[Workflows]:
    engine = open_database(f"sqlite:///{tmp_path / 'vmdr.db'}")
    flows = Workflows(session_factory(engine), None, lambda: None, tmp_path,  # type: ignore[arg-type,return-value]
                      load_plane=lambda _: plane)  # fmt: skip
    yield flows
    engine.dispose()


def item(wf: Workflows, mode: str = "OLR", disks: int = 2, **settings: Any) -> str:
    with wf.sessions.begin() as s:
        machine = Machine(name="web-01")
        s.add(machine)
        s.flush()
        row = ProtectedItem(machine_id=machine.id, state=State.PROTECTED,
                            active_site=Site.RECOVERY, direction=Direction.RECOVERY_TO_PRIMARY,
                            settings={})  # fmt: skip
        s.add(row)
        s.flush()
        ident = row.id
    suffix = ["", "_1", "_2"]
    wf.update_settings(
        ident,
        vm="web-01", vcenter="vc-1", reprotect={"mode": mode},
        disks=[{"unit": u, "file": f"[vmfs-01] web-01/web-01{suffix[u]}.vmdk", "capacity": 1 << 20,
                "address": f"scsi0:{u}", "blob": BLOB.format(item=ident, unit=u)}
               for u in range(disks)],
        failback_targets=[{"unit": u, "file": f"[vmfs-02] web-01/web-01{suffix[u]}.vmdk"}
                          for u in range(disks)],
        **settings,
    )  # fmt: skip
    return ident


def run(kind: JobKind, step: str, params: dict[str, Any], job: str = "job-12345678") -> Events:
    events = Events()
    fn = dict(kind.steps)[step]
    fn(StepContext(job, params, events))
    return events


def kinds(wf: Workflows) -> dict[str, JobKind]:
    return {k.name: k for k in onprem_kinds(wf)}


def test_reprotect_starts_one_replication_per_disk_into_the_target_once(
    wf: Workflows, plane: MemoryPlane
) -> None:
    ident = item(wf, mode="OLR")
    params = {"item": ident, "operation": "reprotect"}
    run(kinds(wf)["reprotectToOnPremises"], "start-replication", params)
    specs = plane.ps().specs
    assert sorted(specs) == [f"fb-{ident}-d0", f"fb-{ident}-d1"]
    first, second = specs[f"fb-{ident}-d0"], specs[f"fb-{ident}-d1"]
    assert (first.source, first.datastore, first.path, first.initial) == (
        BLOB.format(item=ident, unit=0), "vmfs-02", "web-01/web-01-flat.vmdk", "diff")  # fmt: skip
    assert second.path == "web-01/web-01_1-flat.vmdk"
    run(kinds(wf)["reprotectToOnPremises"], "start-replication", params)  # a re-run
    assert len(plane.ps().specs) == 2


def test_alternate_location_starts_with_a_full_copy(wf: Workflows, plane: MemoryPlane) -> None:
    ident = item(wf, mode="ALR", disks=1)
    run(kinds(wf)["reprotectToOnPremises"], "start-replication",
        {"item": ident, "operation": "reprotect"})  # fmt: skip
    assert [s.initial for s in plane.ps().specs.values()] == ["full"]


def test_the_initial_sync_waits_for_every_disk_and_records_what_was_sent(
    wf: Workflows, plane: MemoryPlane
) -> None:
    ident = item(wf)
    params = {"item": ident, "operation": "reprotect"}
    run(kinds(wf)["reprotectToOnPremises"], "start-replication", params)
    for unit, sent in ((0, 4096), (1, 8192)):
        plane.ps().status[f"fb-{ident}-d{unit}"].update(initial_done=True, sent_bytes=sent)
    events = run(kinds(wf)["reprotectToOnPremises"], "initial-sync", params)
    assert wf.settings(ident).reprotect_sent == {"0": 4096, "1": 8192}
    assert ("initial-sync", 8192, f"disk 1: 8192 bytes sent of {1 << 20}") in events.seen


def test_an_initial_sync_that_fails_on_the_process_server_fails_the_step(
    wf: Workflows, plane: MemoryPlane
) -> None:
    ident = item(wf, disks=1)
    params = {"item": ident, "operation": "reprotect"}
    run(kinds(wf)["reprotectToOnPremises"], "start-replication", params)
    plane.ps().status[f"fb-{ident}-d0"]["error"] = {"code": "VMDR-E0421", "message": "no ds"}
    with pytest.raises(VmdrError) as err:
        run(kinds(wf)["reprotectToOnPremises"], "initial-sync", params)
    assert err.value.code == "VMDR-E0826" and "VMDR-E0421" in err.value.message


def test_failback_stops_the_cloud_vm_then_cuts_a_point_the_master_target_applied(
    wf: Workflows, plane: MemoryPlane
) -> None:
    ident = item(wf)
    compute = plane.compute()
    compute.create_from_disks("web-01", ["b0", "b1"], "Standard_D2s_v5", "prod")
    compute.start("web-01")
    params = {"item": ident, "operation": "plannedFailover"}
    run(kinds(wf)["failback"], "shut-down-cloud-vm", params)
    assert compute.status("web-01").state == "stopped"
    run(kinds(wf)["failback"], "final-sync", params, job="abcdef0123")
    assert [(rid, p.tag, p.wait) for rid, p in plane.ps().points] == [
        (f"fb-{ident}-d0", "failback-abcdef01", 600), (f"fb-{ident}-d1", "failback-abcdef01", 600),
    ]  # fmt: skip


def test_commit_refuses_without_a_proof_that_holds_unless_forced(
    wf: Workflows, plane: MemoryPlane
) -> None:
    compute = plane.compute()
    compute.create_from_disks("web-01", ["b0"], "Standard_D2s_v5", "prod")
    half = {"0": {"equal": True}, "1": {"equal": False}}
    ident = item(wf, failback_proof=half)
    commit = kinds(wf)["commitFailback"]
    with pytest.raises(VmdrError) as err:
        run(commit, "check-proof", {"item": ident, "operation": "commit"})
    assert err.value.code == "VMDR-E0825"
    run(commit, "check-proof", {"item": ident, "operation": "commit", "force": True})
    wf.update_settings(ident, failback_proof={"0": {"equal": True}, "1": {"equal": True}})
    run(commit, "check-proof", {"item": ident, "operation": "commit"})
    run(commit, "delete-cloud-vm", {"item": ident, "operation": "commit"})
    assert "web-01" not in compute.vms
