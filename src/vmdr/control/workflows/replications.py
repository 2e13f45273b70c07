"""The failback replications on the cloud process server, one per disk of an
item (``fb-<item>-d<unit>``): attach the target disks to the master target's
VM (a vCenter hot-add) and start them towards it, wait for their initial
sync, stop them (the master target forgets their journals) and detach the
disks. Attach and detach are idempotent: a step run again after a crash
finds in vCenter what is attached already.
Shared by reprotect and failback (``to_onprem.py``), resync and the failback
drill (``upkeep.py``), and reprotect to the cloud (``to_cloud.py``)."""

from __future__ import annotations

import time

from vmdr.control.db.item_settings import DiskTarget
from vmdr.control.jobs import StepContext
from vmdr.control.jobs.params import OperationParams
from vmdr.control.workflows.context import Workflows
from vmdr.model.errors import VmdrError
from vmdr.model.ids import ReplicationId
from vmdr.roles.contracts import NewReplication
from vmdr.transport.client import RemoteError
from vmdr.transport.grants import REPLICATE, replication_names, target_names

__all__ = [
    "ReplicationFailed",
    "attach_targets",
    "detach_targets",
    "master_target_host",
    "master_target_vm",
    "start_replication",
    "stop_replications",
    "wait_initial_sync",
]

INITIAL_SYNC_TIMEOUT = 3600.0


class ReplicationFailed(VmdrError):
    code = "VMDR-E0826"
    msg = "replication of disk {disk} to on-premises failed: {detail}"
    fix = "Read the process server's log; fix the cause and run reprotect again."


def _master_target(wf: Workflows) -> tuple[str | None, str | None]:
    """The VM and ESX host of the master target the process server sends to
    (the data plane's; else the first one registered): disks are attached
    to the VM of the one that writes them."""
    from sqlalchemy import select

    from vmdr.control.db.models import Host, MasterTarget

    access = wf.dataplane.master_target
    with wf.sessions() as s:
        rows = s.scalars(select(MasterTarget).order_by(MasterTarget.registered_at)).all()
        mt = next((r for r in rows if access and r.url == access.url), rows[0] if rows else None)
        host = s.get(Host, mt.host_id) if mt and mt.host_id else None
        return (mt.vm_name if mt else None), (host.name if host else None)


def master_target_host(wf: Workflows) -> str:
    host = _master_target(wf)[1]
    if host is None:
        raise ReplicationFailed(disk="-", detail="the master target's ESX host is unknown")
    return host


def master_target_vm(wf: Workflows) -> str:
    vm = _master_target(wf)[0]
    if vm is None:
        raise ReplicationFailed(
            disk="-",
            detail="the master target's VM is unknown: register it with the VM it runs in",
        )
    return vm


def attach_targets(wf: Workflows, item: str) -> list[DiskTarget]:
    """Hot-add the failback target disks to the master target's VM and
    record the UUID each has there: the master target finds them by it."""
    settings = wf.settings(item)
    targets = settings.failback_targets
    with wf.vsphere(settings.vcenter_id) as vms:
        uuids = vms.attach(master_target_vm(wf), [t.file for t in targets])
    attached = [t.model_copy(update={"device": uuids[t.file]}) for t in targets]
    if attached != targets:
        wf.update_settings(item, failback_targets=attached)
    return attached


def detach_targets(wf: Workflows, item: str) -> list[str]:
    """Detach the failback target disks from the master target's VM (before
    the VM they belong to may be powered on); the files detached."""
    settings = wf.settings(item)
    targets = settings.failback_targets
    if not targets:
        return []
    with wf.vsphere(settings.vcenter_id) as vms:
        detached = vms.detach(master_target_vm(wf), [t.file for t in targets])
    if any(t.device for t in targets):  # none held now (``attachments.py`` reads this)
        released = [t.model_copy(update={"device": None}) for t in targets]
        wf.update_settings(item, failback_targets=released)
    return detached


def start_replication(wf: Workflows, ctx: StepContext) -> None:
    item = ctx.params["item"]
    settings = wf.settings(item)
    initial = ctx.args(OperationParams).initial or (
        "diff" if settings.reprotect_report["mode"] == "OLR" else "full"
    )
    signer = wf.secrets().grant_signer()
    targets = attach_targets(wf, item)
    ctx.progress("attach", 0, f"{len(targets)} disk(s) attached to the master target's VM")
    with wf.dataplane.ps() as ps:
        known = {r.id for r in ps.replications()}
        for disk, target in zip(settings.disks, targets, strict=True):
            rid = str(ReplicationId(item, disk.unit))
            if rid in known:
                continue
            # The process server reads this blob and the master target writes
            # this attached disk, for this replication: nothing else
            # (transport.grants).
            where = target_names(device=target.device)
            names = replication_names(rid, disk.blob, where)
            spec = NewReplication(id=rid, source=disk.blob, **where, initial=initial,
                                  interval=3600, grant=signer.sign(REPLICATE, names))  # fmt: skip
            try:
                ps.start(spec)
            except RemoteError as exc:
                # A run of this step killed mid-request may have created it.
                if exc.remote_code != "VMDR-E0432":
                    raise


def wait_initial_sync(wf: Workflows, ctx: StepContext) -> None:
    item = ctx.params["item"]
    settings = wf.settings(item)
    sent: dict[str, int] = {}
    with wf.dataplane.ps() as ps:
        for disk in settings.disks:
            rid = str(ReplicationId(item, disk.unit))
            deadline = time.monotonic() + INITIAL_SYNC_TIMEOUT
            while not (status := ps.replication(rid)).initial_done:
                if status.error and "retry" not in str(status.error).lower():
                    raise ReplicationFailed(disk=disk.unit, detail=str(status.error))
                if time.monotonic() > deadline:
                    raise ReplicationFailed(disk=disk.unit, detail="initial sync timed out")
                ctx.progress("initial-sync", status.sent_bytes, f"disk {disk.unit}")
                ctx.sleep(0.2)  # a cancel request ends the wait
            sent[str(disk.unit)] = status.sent_bytes
            ctx.progress(
                "initial-sync",
                status.sent_bytes,
                f"disk {disk.unit}: {status.sent_bytes} bytes sent of {disk.capacity}",
            )
    wf.update_settings(item, reprotect_sent=sent)


def stop_replications(wf: Workflows, item: str) -> list[str]:
    """Stop the failback replications (the master target forgets their
    journals), then detach their disks from the master target's VM; the
    files detached."""
    settings = wf.settings(item)
    with wf.dataplane.ps() as ps:
        for disk in settings.disks:
            ps.stop(ReplicationId(item, disk.unit), forget_target=True)
    return detach_targets(wf, item)
