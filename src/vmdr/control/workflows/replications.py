"""The failback replications on the cloud process server, one per disk of an
item (``fb-<item>-d<unit>``): start them towards the master target, wait for
their initial sync, stop them (the master target forgets their journals).
Shared by reprotect and failback (``to_onprem.py``), resync and the failback
drill (``upkeep.py``), and reprotect to the cloud (``to_cloud.py``)."""

from __future__ import annotations

import time

from vmdr.control.jobs import StepContext
from vmdr.control.jobs.params import OperationParams
from vmdr.control.workflows.context import Workflows
from vmdr.model.errors import VmdrError
from vmdr.model.ids import ReplicationId
from vmdr.roles.contracts import NewReplication
from vmdr.transport.client import RemoteError
from vmdr.transport.grants import REPLICATE, replication_names

__all__ = [
    "ReplicationFailed",
    "start_replication",
    "stop_replications",
    "wait_initial_sync",
]

INITIAL_SYNC_TIMEOUT = 3600.0


class ReplicationFailed(VmdrError):
    code = "VMDR-E0826"
    msg = "replication of disk {disk} to on-premises failed: {detail}"
    fix = "Read the process server's log; fix the cause and run reprotect again."


def start_replication(wf: Workflows, ctx: StepContext) -> None:
    item = ctx.params["item"]
    settings = wf.settings(item)
    initial = ctx.args(OperationParams).initial or (
        "diff" if settings.reprotect_report["mode"] == "OLR" else "full"
    )
    signer = wf.secrets().grant_signer()
    with wf.dataplane.ps() as ps:
        known = {r.id for r in ps.replications()}
        for disk, target in zip(settings.disks, settings.failback_targets, strict=True):
            rid = str(ReplicationId(item, disk.unit))
            if rid in known:
                continue
            where = target.datastore_file
            # The process server reads this blob and the master target writes
            # this file, for this disk: nothing else (transport.grants).
            names = replication_names(rid, disk.blob, where.datastore, where.flat)
            spec = NewReplication(id=rid, source=disk.blob, datastore=where.datastore,
                                  path=where.flat, initial=initial, interval=3600,
                                  grant=signer.sign(REPLICATE, names))  # fmt: skip
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


def stop_replications(wf: Workflows, item: str) -> None:
    """Stop the failback replications (the master target forgets their journals)."""
    settings = wf.settings(item)
    with wf.dataplane.ps() as ps:
        for disk in settings.disks:
            ps.stop(ReplicationId(item, disk.unit), forget_target=True)
