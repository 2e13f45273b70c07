"""Discovery of disk shapes the simulator cannot hold (RDM panics it), and the
mapping of SDK faults to vmdr errors, on pyVmomi objects built in memory."""

from __future__ import annotations

import ssl

import pytest
from pyVmomi import vim, vmodl

from vmdr.providers.vsphere import errors
from vmdr.providers.vsphere.discovery import classify_backing, disks_of

D = vim.vm.device
GiB = 1 << 30


def _disk(key: int, ctrl: int, unit: int, backing: object, gib: int = 1) -> object:
    return D.VirtualDisk(
        key=key, controllerKey=ctrl, unitNumber=unit, capacityInBytes=gib * GiB, backing=backing
    )


def _flat(name: str, uuid: str | None = None) -> object:
    return D.VirtualDisk.FlatVer2BackingInfo(fileName=name, uuid=uuid, diskMode="persistent")


def test_a_vm_with_every_kind_of_controller_and_an_rdm() -> None:
    rdm = D.VirtualDisk.RawDiskMappingVer1BackingInfo(
        fileName="[vmfs-01] db/db_1.vmdk", compatibilityMode="physicalMode", lunUuid="0200"
    )
    vrdm = D.VirtualDisk.RawDiskMappingVer1BackingInfo(
        fileName="[vmfs-01] db/db_2.vmdk", compatibilityMode="virtualMode"
    )
    devices = [
        D.ParaVirtualSCSIController(key=1000, busNumber=0),
        D.VirtualLsiLogicSASController(key=1001, busNumber=1),
        D.VirtualAHCIController(key=15000, busNumber=0),
        D.VirtualIDEController(key=200, busNumber=0),
        D.VirtualNVMEController(key=31000, busNumber=0),
        _disk(2000, 1000, 0, _flat("[vmfs-01] db/db.vmdk", "6000c291-aaaa-bbbb-cccc-000000000001")),
        _disk(2001, 1001, 3, rdm, 10),
        _disk(2002, 1001, 4, vrdm, 10),
        _disk(2003, 15000, 1, D.VirtualDisk.SeSparseBackingInfo(fileName="[vsan-01] db/x.vmdk")),
        _disk(2004, 200, 0, D.VirtualDisk.SparseVer2BackingInfo(fileName="[nfs-01] db/old.vmdk")),
        _disk(2005, 31000, 2, _flat("[vmfs-01] db/db_5.vmdk")),
        D.VirtualCdrom(key=3000, controllerKey=200, unitNumber=1),
    ]
    disks = disks_of(devices)
    assert [(d.unit, d.address, d.controller, d.backing) for d in disks] == [
        (0, "scsi0:0", "pvscsi", "flat"),
        (1, "scsi1:3", "lsilogic-sas", "rdm-physical"),
        (2, "scsi1:4", "lsilogic-sas", "rdm-virtual"),
        (3, "sata0:1", "sata", "sesparse"),
        (4, "ide0:0", "ide", "sparse"),
        (5, "nvme0:2", "nvme", "flat"),
    ]
    assert disks[0].uuid == "6000c291-aaaa-bbbb-cccc-000000000001"
    assert disks[0].datastore == "vmfs-01" and disks[1].capacity == 10 * GiB
    assert disks[5].uuid is None  # no UUID: matching falls back to address and size


def test_a_disk_whose_controller_is_unknown_has_no_address() -> None:
    (disk,) = disks_of([_disk(2000, 999, 0, _flat("[a] b.vmdk"))])
    assert disk.address is None and disk.controller is None
    # KB only, as the simulator reports model disks
    (kb,) = disks_of([D.VirtualDisk(key=1, controllerKey=9, capacityInKB=1024, backing=None)])
    assert kb.capacity == 1024 * 1024 and kb.backing == "other" and kb.datastore is None


def test_classify_backing() -> None:
    assert classify_backing(D.VirtualDisk.FlatVer1BackingInfo()) == "flat"
    assert classify_backing(D.VirtualDisk.SparseVer1BackingInfo()) == "sparse"
    assert classify_backing(D.VirtualDisk.PartitionedRawDiskVer2BackingInfo()) == "other"


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        (vim.fault.InvalidLogin(msg="no"), errors.VSphereLoginFailed, "VMDR-E0601"),
        (vim.fault.NotAuthenticated(msg="gone"), errors.VSphereSessionLost, "VMDR-E0610"),
        (
            vim.fault.NoPermission(msg="denied", privilegeId="VirtualMachine.Interact.PowerOn"),
            errors.VSphereNoPermission,
            "VMDR-E0606",
        ),
        (
            vmodl.fault.ManagedObjectNotFound(msg="", obj=vim.VirtualMachine("vm-42")),
            errors.VSphereObjectGone,
            "VMDR-E0607",
        ),
        (vim.fault.InvalidPowerState(msg="already on"), errors.VSphereInvalidState, "VMDR-E0608"),
        (vim.fault.TaskInProgress(msg="busy"), errors.VSphereInvalidState, "VMDR-E0608"),
        (
            vim.fault.FileNotFound(msg="", file="[vmfs-01] x.vmdk"),
            errors.VSphereFileError,
            "VMDR-E0609",
        ),
        (vim.fault.FileAlreadyExists(msg="exists"), errors.VSphereFileError, "VMDR-E0609"),
        (ConnectionRefusedError(111, "refused"), errors.VSphereUnreachable, "VMDR-E0604"),
        (ssl.SSLCertVerificationError("bad cert"), errors.VSphereUnreachable, "VMDR-E0604"),
        (TimeoutError("timed out"), errors.VSphereUnreachable, "VMDR-E0604"),
        (vmodl.fault.InvalidArgument(msg="dc"), errors.VSphereError, "VMDR-E0600"),
    ],
)
def test_faults_become_vmdr_errors(fault: BaseException, error: type, code: str) -> None:
    mapped = errors.translate(fault, "https://vc.example:443/sdk")
    assert type(mapped) is error
    assert mapped.code == code
    assert str(mapped)  # renders without a missing field


def test_fault_messages_reach_the_user() -> None:
    mapped = errors.translate(vim.fault.FileNotFound(msg="", file="[vmfs-01] web/web.vmdk"))
    assert "[vmfs-01] web/web.vmdk" in str(mapped)
    gone = errors.translate(vmodl.fault.ManagedObjectNotFound(obj=vim.VirtualMachine("vm-42")))
    assert "vm-42" in str(gone)
    perm = errors.translate(vim.fault.NoPermission(privilegeId="Datastore.AllocateSpace"))
    assert "Datastore.AllocateSpace" in str(perm)


def test_a_failed_task_names_the_task_when_the_fault_is_generic() -> None:
    mapped = errors.translate(vmodl.fault.NotSupported(msg="nope"), task="task-7")
    assert mapped.code == "VMDR-E0602" and "task-7" in str(mapped)


def test_the_edge_translates_and_keeps_the_cause() -> None:
    with pytest.raises(errors.VSphereInvalidState) as err, errors.vsphere_errors("vc"):
        raise vim.fault.InvalidPowerState(msg="The attempted operation cannot be performed")
    assert isinstance(err.value.__cause__, vim.fault.InvalidPowerState)
