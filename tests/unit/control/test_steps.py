"""Workflow steps below the end-to-end tier: each runs against the real
database (a SQLite file) with the outside world in memory (``outside.py``),
and is checked for what it asked of that world and what it left on the item.
The real compute, process server and vSphere keep their functional tests."""

from __future__ import annotations

import pytest

from vmdr.control.jobs import JobKind, StepContext
from vmdr.control.workflows.context import Workflows
from vmdr.control.workflows.to_onprem import onprem_kinds
from vmdr.model.errors import VmdrError
from vmdr.transport.grants import REPLICATE, GrantVerifier

from .items import BLOB, Events, item, master_target_on, run
from .outside import MemoryPlane, MemoryVms


def kinds(wf: Workflows) -> dict[str, JobKind]:
    return {k.name: k for k in onprem_kinds(wf)}


def test_reprotect_starts_one_replication_per_disk_into_the_target_once(
    wf: Workflows, plane: MemoryPlane, vms: MemoryVms
) -> None:
    ident = item(wf, mode="OLR")
    params = {"item": ident, "operation": "reprotect"}
    run(kinds(wf)["reprotectToOnPremises"], "start-replication", params)
    specs = plane.ps().specs
    assert sorted(specs) == [f"fb-{ident}-d0", f"fb-{ident}-d1"]
    first, second = specs[f"fb-{ident}-d0"], specs[f"fb-{ident}-d1"]
    # The target disks are attached to the master target's VM, and each
    # replication writes the one it names by UUID: never a datastore path.
    attached = vms.attached["mt-01"]
    assert sorted(attached) == ["[vmfs-02] web-01/web-01.vmdk", "[vmfs-02] web-01/web-01_1.vmdk"]
    disk0 = attached["[vmfs-02] web-01/web-01.vmdk"]
    assert (first.source, first.device, first.path, first.initial) == (
        BLOB.format(item=ident, unit=0), disk0, None, "diff")  # fmt: skip
    assert second.device == attached["[vmfs-02] web-01/web-01_1.vmdk"]
    assert [t.device for t in wf.settings(ident).failback_targets] == [first.device, second.device]
    # Each carries the server's grant for exactly its source and target.
    verifier = GrantVerifier(wf.secrets().grant_signer().public_pem().encode())
    for rid, spec in specs.items():
        names = {"id": rid, "disk": rid, "source": spec.source, "device": spec.device}
        verifier.check(spec.grant, REPLICATE, rid, names)
    run(kinds(wf)["reprotectToOnPremises"], "start-replication", params)  # a re-run
    assert len(plane.ps().specs) == 2 and len(vms.attached["mt-01"]) == 2


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
    run(kinds(wf)["reprotectToOnPremises"], "start-replication",
        {"item": ident, "operation": "reprotect"})  # fmt: skip
    compute = plane.compute()
    compute.create_from_disks("web-01", ["b0", "b1"], "Standard_D2s_v5", "prod")
    compute.start("web-01")
    params = {"item": ident, "operation": "plannedFailover"}
    run(kinds(wf)["failback"], "shut-down-cloud-vm", params)
    assert compute.status("web-01").state == "stopped"
    compute.written = {("web-01", 0): [(0, 4096), (65536, 8192)], ("web-01", 1): []}
    run(kinds(wf)["failback"], "final-sync", params, job="abcdef0123")
    ps = plane.ps()
    assert ps.dirty == {f"fb-{ident}-d0": [(0, 4096), (65536, 8192)]}  # what the VM wrote
    assert [(rid, p.tag, p.wait) for rid, p in ps.points] == [
        (f"fb-{ident}-d0", "failback-abcdef01", 600), (f"fb-{ident}-d1", "failback-abcdef01", 600),
    ]  # fmt: skip


def test_when_the_compute_service_cannot_tell_what_was_written_the_disks_are_compared_whole(
    wf: Workflows, plane: MemoryPlane
) -> None:
    """An empty answer would fail back stale data: "unknown" (None) is a
    differential resync of every disk instead."""
    ident = item(wf)
    plane.compute().create_from_disks("web-01", ["b0", "b1"], "Standard_D2s_v5", "prod")
    plane.compute().written = {("web-01", 0): [(0, 4096)]}  # disk 1: unknown
    params = {"item": ident, "operation": "plannedFailover"}
    ps = plane.ps()
    ps.sync_at_once = True
    run(kinds(wf)["failback"], "final-sync", params)
    assert sorted(ps.stopped) == [(f"fb-{ident}-d0", True), (f"fb-{ident}-d1", True)]
    assert [s.initial for s in ps.specs.values()] == ["diff", "diff"]
    assert ps.points == [] and ps.dirty == {}  # nothing trusted from a partial answer


def test_a_failback_run_again_after_its_disks_were_released_replicates_them_again(
    wf: Workflows, plane: MemoryPlane, vms: MemoryVms
) -> None:
    """The power-on failed after the detach: a new failback attaches the
    disks again and resyncs them (differential) before it proves anything."""
    ident = item(wf)
    ps = plane.ps()
    ps.sync_at_once = True
    run(kinds(wf)["reprotectToOnPremises"], "start-replication",
        {"item": ident, "operation": "reprotect"})  # fmt: skip
    params = {"item": ident, "operation": "plannedFailover"}
    run(kinds(wf)["failback"], "detach-from-master-target", params)
    assert vms.attached["mt-01"] == {} and ps.specs == {}
    plane.compute().written = {("web-01", 0): [(0, 4096)], ("web-01", 1): []}
    run(kinds(wf)["failback"], "final-sync", params)
    assert len(vms.attached["mt-01"]) == 2
    assert sorted(ps.specs) == [f"fb-{ident}-d0", f"fb-{ident}-d1"]
    assert [s.initial for s in ps.specs.values()] == ["diff", "diff"]


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


def test_a_committed_failback_closes_the_cycle_so_the_next_reprotect_prepares_again(
    wf: Workflows, vms: MemoryVms
) -> None:
    """Cycle 2 must not write cycle 1's targets under the VM now running on
    them: after the commit, reprotect powers it off and chooses again."""
    ident = item(wf)
    run(kinds(wf)["commitFailback"], "close-cycle", {"item": ident, "operation": "commit"})
    assert wf.settings(ident).failback_targets == []
    targets = {"disk0": "[vmfs-01] web-01/web-01.vmdk", "disk1": "[vmfs-01] web-01/web-01_1.vmdk"}
    wf.update_settings(ident, reprotect={"mode": "OLR", "targets": targets})
    assert vms.power["web-01"] == "poweredOn"
    run(kinds(wf)["reprotectToOnPremises"], "prepare-target",
        {"item": ident, "operation": "reprotect"})  # fmt: skip
    assert vms.power["web-01"] == "poweredOff"
    assert [t.file for t in wf.settings(ident).failback_targets] == list(targets.values())


def test_original_location_powers_the_vm_off_and_writes_its_matched_disks(
    wf: Workflows, vms: MemoryVms
) -> None:
    targets = {"disk0": "[vmfs-01] web-01/web-01.vmdk", "disk1": "[vmfs-01] web-01/web-01_1.vmdk"}
    ident = item(wf, mode="OLR", failback_targets=[], reprotect={"mode": "OLR", "targets": targets})
    params = {"item": ident, "operation": "reprotect", "remove_snapshots": True}
    run(kinds(wf)["reprotectToOnPremises"], "prepare-target", params)
    settings = wf.settings(ident)
    assert vms.power["web-01"] == "poweredOff" and vms.snapshots_removed == ["web-01"]
    assert [(t.unit, t.file) for t in settings.failback_targets] == [
        (0, targets["disk0"]), (1, targets["disk1"])]  # fmt: skip
    assert settings.failback_vm == "web-01" and vms.created == {}


def test_alternate_location_creates_a_new_vm_beside_the_original_on_the_chosen_datastore(
    wf: Workflows, vms: MemoryVms
) -> None:
    master_target_on(wf, "esx-02")
    ident = item(wf, mode="ALR", failback_targets=[])
    params = {"item": ident, "operation": "reprotect", "mode": "alr", "datastore": "vmfs-02"}
    run(kinds(wf)["reprotectToOnPremises"], "prepare-target", params)
    settings = wf.settings(ident)
    host, datastore, disks = vms.created["web-01-failback"]  # the original still exists
    assert (host, datastore, [d.capacity for d in disks]) == ("esx-02", "vmfs-02", [1 << 20] * 2)
    assert [t.file for t in settings.failback_targets] == [
        "[vmfs-02] web-01-failback/web-01-failback.vmdk",
        "[vmfs-02] web-01-failback/web-01-failback_1.vmdk",
    ]
    assert vms.power["web-01"] == "poweredOn"  # production untouched
    run(kinds(wf)["reprotectToOnPremises"], "prepare-target", params)  # a re-run: nothing new
    assert list(vms.created) == ["web-01-failback"]


def test_failback_powers_on_the_target_vm_and_the_item_now_reads_its_disks(
    wf: Workflows, vms: MemoryVms
) -> None:
    ident = item(wf, failback_vm="web-01-failback", failback_targets=[
        {"unit": 0, "file": "[vmfs-02] web-01-failback/web-01-failback.vmdk"},
        {"unit": 1, "file": "[vmfs-02] web-01-failback/web-01-failback_1.vmdk"}])  # fmt: skip
    vms.create("web-01-failback", "esx-02", "vmfs-02", [])
    run(kinds(wf)["failback"], "power-on-onprem", {"item": ident, "operation": "plannedFailover"})
    settings = wf.settings(ident)
    assert vms.power["web-01-failback"] == "poweredOn"
    assert settings.onprem_vm_name == "web-01-failback"
    assert [d.file for d in settings.disks] == [t.file for t in settings.failback_targets]


def test_failback_detaches_the_disks_from_the_master_target_before_their_vm_starts(
    wf: Workflows, plane: MemoryPlane, vms: MemoryVms
) -> None:
    ident = item(wf)
    params = {"item": ident, "operation": "plannedFailover"}
    run(kinds(wf)["reprotectToOnPremises"], "start-replication", params)
    assert len(vms.attached["mt-01"]) == 2
    steps = [name for name, _ in kinds(wf)["failback"].steps]
    assert steps.index("detach-from-master-target") < steps.index("power-on-onprem")
    run(kinds(wf)["failback"], "detach-from-master-target", params)
    assert vms.attached["mt-01"] == {}
    # The replications ended first, their journals forgotten by the master target.
    assert sorted(plane.ps().stopped) == [(f"fb-{ident}-d0", True), (f"fb-{ident}-d1", True)]
    run(kinds(wf)["failback"], "detach-from-master-target", params)  # a re-run: nothing left
    assert vms.attached["mt-01"] == {}


def test_a_cycle_that_gave_way_is_not_a_replication_error_but_a_failed_one_is(
    wf: Workflows,
) -> None:
    from vmdr.control.jobs import JobCancelled
    from vmdr.control.workflows.replicator import replicate_kind

    ident = item(wf)
    undo = replicate_kind(wf).on_fail
    assert undo is not None
    ctx = StepContext("cycle-1", {"item": ident}, Events())
    undo(ctx, JobCancelled(job="cycle-1", step="sync").to_dict())
    assert wf.settings(ident).replication_error is None
    undo(ctx, {"code": "VMDR-E0401", "message": "blob gone", "fix": ""})
    error = wf.settings(ident).replication_error
    assert error is not None and error["code"] == "VMDR-E0401"


def test_a_failback_that_could_not_tell_the_cloud_writes_is_refused_before_the_vm_stops(
    wf: Workflows, plane: MemoryPlane
) -> None:
    """Azure's VMs write managed disks vmdr cannot read yet: the failback
    is refused while the workload still runs, not after it was stopped."""
    ident = item(wf)
    compute = plane.compute()
    compute.create_from_disks("web-01", ["b0", "b1"], "Standard_D2s_v5", "prod")
    compute.start("web-01")
    compute.knows_writes = False
    with pytest.raises(VmdrError) as err:
        run(kinds(wf)["failback"], "shut-down-cloud-vm", {"item": ident, "operation": "x"})
    assert err.value.code == "VMDR-E0714"
    assert compute.status("web-01").state == "running"


def test_a_reprotect_home_from_a_compute_that_cannot_tell_its_writes_is_refused_first(
    wf: Workflows, plane: MemoryPlane
) -> None:
    ident = item(wf)
    plane.compute().knows_writes = False
    with pytest.raises(VmdrError) as err:
        run(kinds(wf)["reprotectToOnPremises"], "prechecks", {"item": ident, "operation": "r"})
    assert err.value.code == "VMDR-E0714"
    assert plane.ps().specs == {}  # nothing was started
