"""The failback half of the cycle: reprotect a failed-over VM from the cloud to
on-premises, fail back (a planned failover in the recovery → primary
direction) with a proof that every on-premises disk equals its cloud disk,
and commit (delete the cloud VM; refused while the proof does not hold).

Data path: page blob → the cloud **process server** → TLS, zstd frames → the
on-premises **master target** → its retention journal → the VMDK. Original
location recovery starts with a differential resync (both sides hash, only
differing blocks travel); alternate location recovery creates the VM on the
master target's ESX host and datastore, then copies in full. Before anything
changes, ``model.prechecks`` judges every rule of the source documents.
"""

from __future__ import annotations

from typing import Any

from vmdr.control.db.item_settings import DiskTarget
from vmdr.control.jobs import JobKind, StepContext
from vmdr.control.jobs.params import RecoveryOptions
from vmdr.control.reprotect_check import ReprotectCheck, run_reprotect_check
from vmdr.control.workflows.context import Workflows
from vmdr.control.workflows.replications import (
    ReplicationFailed,
    master_target_host,
    start_replication,
    stop_replications,
    wait_initial_sync,
)
from vmdr.model.diskmatch import CloudDisk
from vmdr.model.dspath import DatastoreFile
from vmdr.model.errors import VmdrError
from vmdr.model.ids import ReplicationId
from vmdr.model.prechecks import PrecheckFailed
from vmdr.providers.azure.compute import CloudCompute
from vmdr.providers.azure.errors import CloudWritesUnknown
from vmdr.roles.contracts import PointRequest

__all__ = ["FailbackProofMissing", "onprem_kinds"]


class FailbackProofFailed(VmdrError):
    code = "VMDR-E0824"
    msg = "on-premises disk {disk} differs from the cloud disk after the final sync ({bytes} bytes)"
    fix = (
        "The on-premises VM was not powered on. Retry the failback; the cloud VM is stopped "
        "and its disks are unchanged."
    )


class FailbackProofMissing(VmdrError):
    code = "VMDR-E0825"
    msg = "commit refused: failback of {vm} has no proof that every disk arrived intact"
    fix = (
        "Fail back again (`vmdr failback {vm}`), or commit with --force if you verified the "
        "disks another way: commit deletes the cloud VM and its disks' last copy."
    )


def _refresh_discovery(wf: Workflows, vcenter_id: str) -> None:
    """Judge today's vCenter, not yesterday's: a VM deleted since (ALR), a
    snapshot removed or taken, the master target moved."""
    from vmdr.control.db.models import VCenter
    from vmdr.control.inventory import store_discovery

    with wf.vsphere(vcenter_id) as vms:
        inventory = vms.inventory()
    with wf.sessions.begin() as s:
        vc = s.get(VCenter, vcenter_id)
        if vc is not None:
            store_discovery(s, vc, inventory)


def _compute_knowing_writes(wf: Workflows, vm: str) -> CloudCompute:
    """The cloud compute, if it can tell what its VMs wrote; else refused
    (before a reprotect sets anything up, before a failback stops the VM):
    what would travel home is the replica blob, not the VM's disks."""
    compute = wf.dataplane.compute()
    if not compute.knows_writes:
        raise CloudWritesUnknown(name=vm, disk="its disks", where=compute.where)
    return compute


def _prechecks(wf: Workflows, ctx: StepContext) -> None:
    _compute_knowing_writes(wf, wf.settings(ctx.params["item"]).vm_name)
    plan = prechecks_report(wf, ctx)
    error = plan.pop("error", None)
    wf.update_settings(ctx.params["item"], reprotect=plan)
    for finding in plan["findings"]:
        ctx.progress("prechecks", 0, f"{finding['code']}: {finding['message']}")
    if error is not None:
        raise error


def prechecks_report(wf: Workflows, ctx: StepContext) -> dict[str, Any]:
    """Refresh discovery, then judge every rule; the report as a dict (with
    the matched target of each cloud disk, and the error to raise if refused)."""
    item, p = ctx.params["item"], ctx.args(RecoveryOptions)
    settings = wf.settings(item)
    _refresh_discovery(wf, settings.vcenter_id)
    cloud = [CloudDisk(f"disk{d.unit}", d.capacity, d.address, d.uuid) for d in settings.disks]
    with wf.sessions() as s:
        machine_id = wf.item(s, item)[1].id
    check = ReprotectCheck(
        machine=machine_id,
        mode=p.mode,
        datastore=p.datastore,
        remove_snapshots=p.remove_snapshots,
    )
    with wf.sessions() as s:
        report = run_reprotect_check(s, check, server_id="this", cloud_disks=cloud)
    plan = report.to_dict()
    if report.matching is not None:
        plan["targets"] = {
            m.cloud.name: m.original.file if m.original else None for m in report.matching.matches
        }
        plan["matched_by"] = {m.cloud.name: m.method for m in report.matching.matches}
    try:
        report.raise_if_failed()
    except PrecheckFailed as exc:
        return {**plan, "error": exc}
    return plan


def _prepare_target(wf: Workflows, ctx: StepContext) -> None:
    from vmdr.providers.vsphere.control import NewDisk

    item = ctx.params["item"]
    settings = wf.settings(item)
    plan, vm = settings.reprotect_report, settings.vm_name
    if settings.failback_targets:
        return
    targets: list[DiskTarget] = []
    with wf.vsphere(settings.vcenter_id) as vms:
        if plan["mode"] == "OLR":
            vms.power_off(vm, guest_timeout=60)
            if ctx.args(RecoveryOptions).remove_snapshots:
                vms.remove_snapshots(vm)
            for disk in settings.disks:
                file = plan["targets"][f"disk{disk.unit}"]
                if file is None:
                    raise ReplicationFailed(
                        disk=disk.unit,
                        detail="no original disk matched; "
                        "extra disks are not created by this version",
                    )
                targets.append(DiskTarget(unit=disk.unit, file=file))
            name = vm
        else:
            datastore = ctx.args(RecoveryOptions).datastore
            if datastore is None:  # the prechecks refuse this before (VMDR-E0819)
                raise ReplicationFailed(disk="-", detail="no datastore for the new VM")
            name = vm if not vms.exists(vm) else f"{vm}-failback"
            host = master_target_host(wf)
            new = [NewDisk(d.capacity, d.uuid or "") for d in settings.disks]
            if not vms.exists(name):
                vms.create(name, host, datastore, new)
            for i, disk in enumerate(settings.disks):
                file = DatastoreFile.of_disk(datastore, name, i)
                targets.append(DiskTarget(unit=disk.unit, file=str(file)))
    wf.update_settings(item, failback_targets=targets, failback_vm=name)


def _stop_cloud_vm(wf: Workflows, ctx: StepContext) -> None:
    settings = wf.settings(ctx.params["item"])
    vm = _compute_knowing_writes(wf, settings.vm_name).stop(settings.vm_name)
    ctx.progress("shut-down-cloud-vm", 0, f"cloud VM {vm.name} is {vm.state}")


def _restore_cloud_point(wf: Workflows, ctx: StepContext) -> None:
    """Failback at an earlier recovery point: the cloud disks go back to it
    first (their latest state kept as a recovery point of its own)."""
    from vmdr.control.workflows.to_cloud import restore_point, take_point

    if ctx.args(RecoveryOptions).recovery_point is None:
        return
    take_point(wf, ctx, f"before-failback-to-{ctx.params['recovery_point']}")  # once per job
    restore_point(wf, ctx)


def _final_sync(wf: Workflows, ctx: StepContext) -> None:
    """The writes the cloud VM made (as its compute service reports them),
    then a tagged point that the master target has applied. After the cloud
    disks went back to an earlier point, the blocks that changed are in no
    record of writes, and a compute service may not know them at all; a
    failback run again after its disks were released has no replication
    left: then the disks are attached again and both sides hashed (a
    differential resync), so that the on-premises disks become exactly the
    cloud's."""
    item = ctx.params["item"]
    settings = wf.settings(item)
    written: list[list[tuple[int, int]] | None] = [None] * len(settings.disks)
    if ctx.args(RecoveryOptions).recovery_point is None:
        compute = wf.dataplane.compute()
        written = [compute.written_extents(settings.vm_name, index, disk.blob, disk.capacity)
                   for index, disk in enumerate(settings.disks)]  # fmt: skip
    with wf.dataplane.ps() as ps:
        known = {r.id for r in ps.replications()}
    # A failback retried after its disks were released (the power-on failed)
    # finds no replication to feed: they start again, differential.
    gone = any(str(ReplicationId(item, d.unit)) not in known for d in settings.disks)
    if gone or any(extents is None for extents in written):
        stop_replications(wf, item)
        sub = ctx.with_params(initial="diff")
        start_replication(wf, sub)
        wait_initial_sync(wf, sub)
        return
    with wf.dataplane.ps() as ps:
        for disk, extents in zip(settings.disks, written, strict=True):
            assert extents is not None
            rid = ReplicationId(item, disk.unit)
            if extents:
                ps.mark_dirty(rid, extents)
            point = ps.point(rid, PointRequest(tag=f"failback-{ctx.job_id[:8]}", wait=600))
            if not point.get("delivered"):
                raise ReplicationFailed(disk=disk.unit, detail="the final point was not applied")
            ctx.progress(
                "final-sync",
                sum(e[1] for e in extents),
                f"disk {disk.unit}: {len(extents)} changed extents",
            )


def _prove(wf: Workflows, ctx: StepContext) -> None:
    """Whole-disk digests of both sides compared where the bytes are: the
    cloud process server hashes the cloud disk, the master target the disk
    attached to it (``roles.proof``); kept as the failback's proof."""
    item = ctx.params["item"]
    settings = wf.settings(item)
    proof = {}
    with wf.dataplane.ps() as ps:
        for disk, target in zip(settings.disks, settings.failback_targets, strict=True):
            rid = ReplicationId(item, disk.unit)
            status = ps.prove(rid)
            while status["state"] == "running":
                ctx.progress("prove", status["done"], f"disk {disk.unit}")
                ctx.sleep(0.5)  # a cancel request ends the wait
                status = ps.proof(rid)
            if status["state"] != "done":
                error = status.get("error") or {}
                raise ReplicationFailed(disk=disk.unit, detail=f"the proof failed: "
                                        f"{error.get('code')}: {error.get('message')}")  # fmt: skip
            result = status["result"]
            proof[str(disk.unit)] = {
                "cloud": disk.blob,
                "onprem": target.file,
                "cloud_root": result["source_root"],
                "onprem_root": result["target_root"],
                "equal": result["equal"],
            }
            if not result["equal"]:
                wf.update_settings(item, failback_proof=proof)
                raise FailbackProofFailed(disk=target.file, bytes=result["differing_bytes"])
    wf.update_settings(item, failback_proof=proof)
    ctx.progress("prove", 0, f"{len(proof)} disk(s) equal, byte for byte")


def _release_targets(wf: Workflows, ctx: StepContext) -> None:
    """The disks are proven: the failback replications end and the disks
    leave the master target's VM, before their own VM may be powered on
    (ESX would refuse to start a VM whose disk another VM holds open)."""
    detached = stop_replications(wf, ctx.params["item"])
    ctx.progress("detach", 0, f"{len(detached)} disk(s) detached from the master target's VM")


def _power_on_onprem(wf: Workflows, ctx: StepContext) -> None:
    item = ctx.params["item"]
    settings = wf.settings(item)
    with wf.vsphere(settings.vcenter_id) as vms:
        vms.power_on(settings.failback_vm_name)
    # From now on the on-premises side of the item is the failed-back VM and
    # its disks (after ALR: a new VM, new files); protecting it again reads them.
    files = {t.unit: t.file for t in settings.failback_targets}
    disks = [d.model_copy(update={"file": files[d.unit]}) for d in settings.disks]
    wf.update_settings(item, disks=disks, onprem_vm=settings.failback_vm_name)


def _check_proof(wf: Workflows, ctx: StepContext) -> None:
    settings = wf.settings(ctx.params["item"])
    proof = settings.failback_proof or {}
    holds = len(proof) == len(settings.disks) and all(p["equal"] for p in proof.values())
    if not holds and not ctx.args(RecoveryOptions).force:
        raise FailbackProofMissing(vm=settings.vm_name)


def _delete_cloud_vm(wf: Workflows, ctx: StepContext) -> None:
    settings = wf.settings(ctx.params["item"])
    wf.dataplane.compute().delete(settings.vm_name)


def _close_cycle(wf: Workflows, ctx: StepContext) -> None:
    """The failback's targets served their cycle: the next reprotect home
    chooses its own (and powers the VM off again), never these."""
    wf.update_settings(ctx.params["item"], failback_targets=[], failback_vm=None)


def onprem_kinds(wf: Workflows) -> list[JobKind]:
    step, kind = wf.step, wf.operation_kind

    return [
        kind(
            "reprotectToOnPremises",
            [
                ("prechecks", step(_prechecks)),
                ("prepare-target", step(_prepare_target)),
                ("start-replication", step(start_replication)),
                ("initial-sync", step(wait_initial_sync)),
            ],
            cancel_before=1,
        ),
        kind(
            "failback",
            [
                ("shut-down-cloud-vm", step(_stop_cloud_vm)),
                ("restore-cloud-point", step(_restore_cloud_point)),
                ("final-sync", step(_final_sync)),
                ("prove", step(_prove)),
                ("detach-from-master-target", step(_release_targets)),
                ("power-on-onprem", step(_power_on_onprem)),
            ],
            cancel_before=1,
            site="primary",
        ),
        kind(
            "commitFailback",
            [
                ("check-proof", step(_check_proof)),
                ("delete-cloud-vm", step(_delete_cloud_vm)),
                ("close-cycle", step(_close_cycle)),
            ],
        ),
    ]
