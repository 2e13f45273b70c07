"""The remaining ASR operations on a protected item: test failover and its
cleanup, resync, and disable protection.

- **testFailover** (to the cloud): the disks at a recovery point (the latest,
  or ``recovery_point``) are copied to separate test blobs and a test VM
  ``<vm>-test`` starts from them on an isolated network; the protected VM, its
  replica disks and continuous replication are untouched.
  **testFailoverCleanup** deletes the test VM and its disks.
- **resync**: replication starts over — to the cloud, a differential resync of
  every disk with a verify and a new point; back home, the process server's
  replications are recreated with an initial differential resync.
- **disableProtection**: replication stops (the failback replications and
  their journals on the master target are removed); the cloud disks and their
  recovery points are kept, as a running cloud VM may still use them — delete
  them in the storage account when they are no longer needed.
"""

from __future__ import annotations

from vmdr.control.db.item_settings import ItemSettings, TrialVm
from vmdr.control.jobs import JobKind, StepContext
from vmdr.control.jobs.params import PointParams, RecoveryOptions
from vmdr.control.workflows.context import Workflows
from vmdr.control.workflows.replications import (
    master_target_host,
    master_target_vm,
    start_replication,
    stop_replications,
    wait_initial_sync,
)
from vmdr.control.workflows.to_cloud import copy_verified, sync_disks, take_point, verify_replicas
from vmdr.model.dspath import DatastoreFile
from vmdr.model.ids import ReplicationId
from vmdr.roles.contracts import MaterialiseRequest
from vmdr.transport.grants import MATERIALISE, target_names

__all__ = ["TEST_NETWORK", "upkeep_kinds"]

TEST_NETWORK = "vmdr-test-isolated"


def _test_blob(blob: str) -> str:
    return f"{blob}-test"


def _prepare_test_disks(wf: Workflows, ctx: StepContext) -> None:
    item = ctx.params["item"]
    seq, locations = wf.point(item, ctx.args(RecoveryOptions).recovery_point)
    for disk in wf.settings(item).disks:
        result, _ = copy_verified(ctx, locations[disk.unit], _test_blob(disk.blob))
        ctx.progress("prepare-test-disks", result.written, f"disk {disk.unit} at point {seq}")
    wf.update_settings(
        item, test_failover=TrialVm(point=seq, vm=f"{wf.settings(item).vm_name}-test")
    )


def _start_test_vm(wf: Workflows, ctx: StepContext) -> None:
    from vmdr.control.workflows.to_cloud import CLOUD_VM_SIZE
    from vmdr.providers.azure.errors import CloudVmNotFound

    settings = wf.settings(ctx.params["item"])
    compute, name = wf.dataplane.compute(), settings.test.vm
    try:
        compute.status(name)
    except CloudVmNotFound:
        disks = [_test_blob(d.blob) for d in settings.disks]
        compute.create_from_disks(name, disks, CLOUD_VM_SIZE, TEST_NETWORK)
    vm = compute.start(name)
    ctx.progress("start-test-vm", 0, f"test VM {name} is {vm.state} on {TEST_NETWORK}")


def _clean_up_test(wf: Workflows, ctx: StepContext) -> None:
    from vmdr.providers.azure.pageblob import delete

    item = ctx.params["item"]
    settings = wf.settings(item)
    test = settings.test_failover
    wf.dataplane.compute().delete(test.vm if test else f"{settings.vm_name}-test")
    for disk in settings.disks:
        delete(_test_blob(disk.blob))
    wf.update_settings(item, test_failover=None)


def _drill_name(settings: ItemSettings) -> str:
    return f"{settings.onprem_vm_name}-drill"


def _create_drill_vm(wf: Workflows, ctx: StepContext) -> None:
    """The failback drill's scratch VM on the master target's ESX host, on the
    datastore the failback would use; no network card: isolated by design."""
    from vmdr.providers.vsphere.control import NewDisk, vmware_disk_uuid

    item = ctx.params["item"]
    settings = wf.settings(item)
    name = _drill_name(settings)
    datastore = settings.failback_targets[0].datastore_file.datastore
    with wf.vsphere(settings.vcenter_id) as vms:
        if not vms.exists(name):
            disks = [NewDisk(d.capacity, vmware_disk_uuid()) for d in settings.disks]
            vms.create(name, master_target_host(wf), datastore, disks)
    wf.update_settings(
        item,
        test_failover=TrialVm(vm=name, datastore=datastore, direction="recoveryToPrimary"),
    )
    ctx.progress("create-drill-vm", 0, f"scratch VM {name} on {datastore}")


def _drill_files(settings: ItemSettings) -> list[str]:
    drill = settings.test
    return [str(DatastoreFile.of_disk(drill.datastore or "", drill.vm, i))
            for i in range(len(settings.disks))]  # fmt: skip


def _materialise_drill_disks(wf: Workflows, ctx: StepContext) -> None:
    """The scratch VM's disks are attached to the master target's VM, and
    the master target writes each as at the latest recovery point it holds;
    the replica itself is not touched."""

    item = ctx.params["item"]
    settings = wf.settings(item)
    files = _drill_files(settings)
    with wf.vsphere(settings.vcenter_id) as vms:
        uuids = vms.attach(master_target_vm(wf), files)
    signer = wf.secrets().grant_signer()
    with wf.dataplane.mt() as mt:
        for file, disk in zip(files, settings.disks, strict=True):
            rid = str(ReplicationId(item, disk.unit))
            where = target_names(device=uuids[file])
            names = {"disk": rid, "point": "latest", **where}
            at = MaterialiseRequest(point="latest", **where,
                                    grant=signer.sign(MATERIALISE, names))  # fmt: skip
            done = mt.materialise(rid, at)
            ctx.progress(
                "materialise",
                disk.capacity,
                f"disk {disk.unit} as at point {done['point']['seq']}",
            )


def _power_on_drill(wf: Workflows, ctx: StepContext) -> None:
    """The scratch disks leave the master target's VM first: a VM does not
    start on disks another VM holds."""
    settings = wf.settings(ctx.params["item"])
    with wf.vsphere(settings.vcenter_id) as vms:
        vms.detach(master_target_vm(wf), _drill_files(settings))
        vms.power_on(settings.test.vm)


def _clean_up_drill(wf: Workflows, ctx: StepContext) -> None:
    item = ctx.params["item"]
    settings = wf.settings(item)
    name = settings.test_failover.vm if settings.test_failover else _drill_name(settings)
    with wf.vsphere(settings.vcenter_id) as vms:
        if settings.test_failover and settings.test_failover.datastore:
            # A drill that failed half-way may have left them attached.
            vms.detach(master_target_vm(wf), _drill_files(settings))
        if vms.exists(name):
            vms.power_off(name, guest_timeout=30)
            vms.delete(name)  # its files go with it
    wf.update_settings(item, test_failover=None)


def _restart_failback_replication(wf: Workflows, ctx: StepContext) -> None:
    """Recreated with a differential initial sync: whatever the target holds
    already (OLR or ALR) is not sent again."""
    stop_replications(wf, ctx.params["item"])
    start_replication(wf, ctx.with_params(initial="diff"))


def _stop(wf: Workflows, ctx: StepContext) -> None:
    stop_replications(wf, ctx.params["item"])


def _take_point(wf: Workflows, ctx: StepContext) -> None:
    """A recovery point on demand, named by the user. To the cloud: sync the
    changes first, then snapshot. Back home (the VM runs in the cloud): a
    snapshot of the cloud disks, a point a later failback can choose."""
    from vmdr.model.lifecycle import Direction

    with wf.sessions() as s:
        row, _ = wf.item(s, ctx.params["item"])
        to_cloud = row.direction == Direction.PRIMARY_TO_RECOVERY
    if to_cloud:
        sync_disks(wf, ctx, "sync", False, True)  # quiesced: an app point if the guest agrees
        verify_replicas(wf, ctx)
    take_point(wf, ctx, ctx.args(PointParams).tag or "manual")


def upkeep_kinds(wf: Workflows) -> list[JobKind]:
    step, kind = wf.step, wf.operation_kind

    return [
        kind(
            "testFailover",
            [
                ("prepare-test-disks", step(_prepare_test_disks)),
                ("start-test-vm", step(_start_test_vm)),
            ],
        ),
        kind("testFailoverCleanup", [("clean-up-test", step(_clean_up_test))]),
        kind(
            "resyncToCloud",
            [
                # differential: a resync is asked for when something is off
                ("resync", step(sync_disks, "resync", True, True)),
                ("verify", step(verify_replicas)),
                ("recovery-point", step(take_point, "resync")),
            ],
        ),
        kind(
            "resyncToOnPremises",
            [
                ("restart-replication", step(_restart_failback_replication)),
                ("initial-sync", step(wait_initial_sync)),
            ],
        ),
        kind("disableProtection", [("stop-replication", step(_stop))]),
        JobKind("recoveryPoint", [("recovery-point", step(_take_point))], params=PointParams),
        kind(
            "failbackDrill",
            [
                ("create-drill-vm", step(_create_drill_vm)),
                ("materialise", step(_materialise_drill_disks)),
                ("power-on-drill-vm", step(_power_on_drill)),
            ],
        ),
        kind("failbackDrillCleanup", [("clean-up-drill", step(_clean_up_drill))]),
    ]
