"""The cloud-bound half of the cycle: protect a VM, fail it over to the cloud
(planned or unplanned), cancel a planned failover, commit, and reprotect to
the cloud after a failback.

Data path: the VM's flat VMDK extents (read through the data plane's
datastore mounts) while a VM snapshot holds them → page blobs. Changed block
tracking names the areas changed since the last sync (``DirtyCopy`` reads
only those); the first sync, a reset tracking, and reprotect after a
failback compare whole disks (``DiffResync``: only blocks that differ are
sent, so reprotect sends only the delta). Recovery points are page blob
snapshots, labelled "app" only when the VM snapshot was quiesced. Every step
is idempotent (a sync of equal disks moves nothing).
"""

from __future__ import annotations

from vmdr.blocks.copy import DirtyCopy
from vmdr.blocks.operation import Counters
from vmdr.blocks.resync import DiffResync
from vmdr.blocks.urls import open_backend
from vmdr.blocks.verify import Verify, VerifyResult
from vmdr.control.db.item_settings import ItemDisk, LastSync
from vmdr.control.jobs import JobKind, StepContext
from vmdr.control.jobs.params import RecoveryOptions
from vmdr.control.workflows.context import Workflows
from vmdr.model.errors import VmdrError

__all__ = ["ReplicaDiffers", "cloud_kinds"]

CLOUD_VM_SIZE = "Standard_D2s_v3"
CLOUD_NETWORK = "vmdr-recovery"


class ReplicaDiffers(VmdrError):
    code = "VMDR-E0823"
    msg = "after the sync, cloud disk {blob} differs from {source} ({bytes} bytes)"
    fix = "Nothing was switched over. Retry the operation; if it repeats, check the source disk."


def _plan_disks(wf: Workflows, ctx: StepContext) -> None:
    item = ctx.params["item"]
    if wf.settings(item).disks:
        return
    plane = wf.dataplane
    with wf.sessions() as s:
        _, machine = wf.item(s, item)
        disks = [
            ItemDisk(
                unit=d.unit, file=d.path, capacity=d.capacity, uuid=d.uuid,
                address=d.address or f"scsi0:{d.unit}", blob=plane.blob_url(item, d.unit),
            )
            for d in machine.disks
        ]  # fmt: skip
    plane.source_disk(disks[0].file)  # the datastore is readable, before anything else
    wf.update_settings(item, disks=disks, vm=machine.name, vcenter=machine.vcenter_id)


def sync_disks(
    wf: Workflows, ctx: StepContext, step: str, differential: bool = False, quiesce: bool = False
) -> None:
    """On-premises disks → page blobs, through a VM snapshot.

    The snapshot (quiesced if asked and the guest agrees) holds the disks
    still while they are read; changed block tracking says what changed
    since the changeId the last sync stored, and only those areas are read
    and sent. A disk with no stored changeId (the first sync), a reset one,
    or ``differential`` (after a failback the master target wrote the disks
    where no tracking saw it) is compared whole instead: every block that
    differs is sent. The snapshot's changeIds are stored only once every
    disk is in the cloud, so a sync that fails is asked again from the last
    good one. The snapshot is removed whatever happens."""
    item = ctx.params["item"]
    plane, settings = wf.dataplane, wf.settings(item)
    name = settings.onprem_vm_name
    known = {} if differential else settings.change_ids
    since = {d.file: known.get(str(d.unit), "") for d in settings.disks}
    with wf.vsphere(settings.vcenter_id) as vms:
        snap = vms.cycle_snapshot(name, ctx.job_id, quiesce, since)
    for file in snap.reset:
        ctx.progress(step, 0, f"{file}: change tracking was reset (VMDR-E0615), compared whole")
    sent: dict[str, int] = {}
    read: dict[str, int] = {}
    how: dict[str, str] = {}
    try:
        for disk in settings.disks:
            areas = snap.changed.get(disk.file)
            result = resync_into(ctx, plane.source_disk(disk.file).url, disk.blob, areas)
            how[str(disk.unit)] = "differential" if areas is None else "changed"
            sent[str(disk.unit)] = result.written + result.zeroed
            read[str(disk.unit)] = result.read
            ctx.progress(
                step,
                result.written,
                f"disk {disk.unit} ({how[str(disk.unit)]}): {result.read} bytes read, "
                f"{result.written} written, {result.zeroed} zeroed, of {disk.capacity}",
            )
    finally:
        with wf.vsphere(settings.vcenter_id) as vms:
            vms.remove_cycle_snapshots(name)
    ids = {str(d.unit): snap.change_ids[d.file] for d in settings.disks
           if d.file in snap.change_ids}  # fmt: skip
    last = LastSync(step=step, bytes=sent, read=read, how=how, consistency=snap.consistency,
                    job=ctx.job_id)  # fmt: skip
    wf.update_settings(item, last_sync=last, change_ids=ids)


def last_sync_bytes(wf: Workflows, item: str) -> int:
    """Bytes the item's last sync wrote or zeroed, over all its disks."""
    last = wf.settings(item).last_sync
    return sum(last.bytes.values()) if last is not None else 0


def verify_replicas(wf: Workflows, ctx: StepContext) -> None:
    item = ctx.params["item"]
    plane, settings = wf.dataplane, wf.settings(item)
    proof = {}
    for disk in settings.disks:
        source = plane.source_disk(disk.file)
        with open_backend(source.url) as a, open_backend(disk.blob) as b:
            result = ctx.run(Verify(a, b))
        if not result.equal:
            raise ReplicaDiffers(blob=disk.blob, source=disk.file, bytes=result.differing_bytes)
        proof[str(disk.unit)] = {"root": result.root_a.hex(), "equal": True}
    wf.update_settings(item, cloud_proof=proof)


def take_point(wf: Workflows, ctx: StepContext, tag: str) -> None:
    from vmdr.providers.azure.pageblob import snapshot

    item = ctx.params["item"]
    settings = wf.settings(item)
    if settings.point_job == ctx.job_id:
        return  # taken by an earlier run of this step
    locations = {d.unit: snapshot(d.blob) for d in settings.disks}
    # What this job's VM snapshot was; a point of disks no snapshot of this
    # job held (the cloud disks before a failback) is crash-consistent.
    last = settings.last_sync
    kind = last.consistency if last is not None and last.job == ctx.job_id else "crash"
    seq = wf.add_point(item, tag, kind, locations)
    wf.update_settings(item, point_job=ctx.job_id)
    ctx.progress("recovery-point", 0, f"recovery point {seq} ({tag})")


def _shut_down_source(wf: Workflows, ctx: StepContext) -> None:
    settings = wf.settings(ctx.params["item"])
    with wf.vsphere(settings.vcenter_id) as vms:
        name = settings.onprem_vm_name
        how = vms.power_off(name, guest_timeout=60)
    ctx.progress("shut-down-source", 0, f"{name} powered off ({how})")


def _start_in_cloud(wf: Workflows, ctx: StepContext) -> None:
    from vmdr.providers.azure.errors import CloudVmNotFound

    settings = wf.settings(ctx.params["item"])
    compute, name = wf.dataplane.compute(), settings.vm_name
    try:
        compute.status(name)
    except CloudVmNotFound:
        compute.create_from_disks(
            name, [d.blob for d in settings.disks], CLOUD_VM_SIZE, CLOUD_NETWORK
        )
    vm = compute.start(name)
    ctx.progress("start-in-cloud", 0, f"cloud VM {name} is {vm.state}")


def resync_into(
    ctx: StepContext, source: str, target: str, areas: list[tuple[int, int]] | None = None
) -> Counters:
    """Make ``target`` (created or grown as needed) equal to ``source``: only
    the blocks that differ are written; given ``areas`` (``(start, length)``,
    what changed block tracking says changed), only those are read, the rest
    trusted equal. A cancel request stops the copy at once (the job's cancel
    scope)."""
    with open_backend(source) as src, open_backend(target, "rw", create=True) as dst:
        if dst.size() < src.size():
            dst.resize(src.size())
        copy = DiffResync(src, dst) if areas is None else DirtyCopy(src, dst, areas)
        result: Counters = ctx.run(copy)
        dst.flush()
    return result


def copy_verified(ctx: StepContext, source: str, target: str) -> tuple[Counters, VerifyResult]:
    """``resync_into``, then prove it; ``ReplicaDiffers`` if it is not."""
    result = resync_into(ctx, source, target)
    with open_backend(source) as src, open_backend(target) as dst:
        check: VerifyResult = ctx.run(Verify(src, dst))
    if not check.equal:
        raise ReplicaDiffers(blob=target, source=source, bytes=check.differing_bytes)
    return result, check


def restore_point(wf: Workflows, ctx: StepContext) -> None:
    """Unplanned failover: the cloud disks go back to the chosen point."""
    item = ctx.params["item"]
    seq, locations = wf.point(item, ctx.args(RecoveryOptions).recovery_point)
    proof = {}
    for disk in wf.settings(item).disks:
        result, check = copy_verified(ctx, locations[disk.unit], disk.blob)
        proof[str(disk.unit)] = {"point": locations[disk.unit], "root": check.root_a.hex()}
        ctx.progress("restore-point", result.written, f"disk {disk.unit} at point {seq}")
    wf.update_settings(item, failed_over_at_point=seq, restore_proof=proof)


def _cancel_in_cloud(wf: Workflows, ctx: StepContext) -> None:
    settings = wf.settings(ctx.params["item"])
    wf.dataplane.compute().delete(settings.vm_name)
    with wf.vsphere(settings.vcenter_id) as vms:
        vms.power_on(settings.onprem_vm_name)


def cloud_kinds(wf: Workflows) -> list[JobKind]:
    step, kind = wf.step, wf.operation_kind

    return [
        kind(
            "enableProtection",
            [
                ("plan", step(_plan_disks)),
                ("initial-replication", step(sync_disks, "initial-replication", False, True)),
                ("verify", step(verify_replicas)),
                ("recovery-point", step(take_point, "initial")),
            ],
            cancel_before=2,
        ),
        kind(
            "plannedFailover",
            [
                ("shut-down-source", step(_shut_down_source)),
                ("final-sync", step(sync_disks, "final-sync", False, True)),
                ("verify", step(verify_replicas)),
                ("recovery-point", step(take_point, "planned-failover")),
                ("start-in-cloud", step(_start_in_cloud)),
            ],
            cancel_before=1,
            site="recovery",
        ),
        kind(
            "unplannedFailover",
            [
                ("restore-point", step(restore_point)),
                ("start-in-cloud", step(_start_in_cloud)),
            ],
            site="recovery",
        ),
        kind("cancelFailover", [("cancel-in-cloud", step(_cancel_in_cloud))], site="primary"),
        kind("commit", []),
        kind(
            "reprotectToCloud",
            [
                ("stop-failback-replication", step(_forget_failback_replication)),
                ("delta-sync", step(sync_disks, "delta-sync", True, True)),
                ("verify", step(verify_replicas)),
                ("recovery-point", step(take_point, "reprotect")),
            ],
            cancel_before=1,
        ),
    ]


def _forget_failback_replication(wf: Workflows, ctx: StepContext) -> None:
    from vmdr.control.workflows.replications import stop_replications

    stop_replications(wf, ctx.params["item"])
