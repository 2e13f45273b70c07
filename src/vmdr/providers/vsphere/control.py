"""Control of on-premises VMs: power, snapshots, create (the alternate
location path), attach an existing disk, delete, where a VM lives.

Tasks are waited on through the PropertyCollector (``session.wait_for_task``)
and unset properties read through it (``session.retrieve``): both are needed
against the simulator and harmless against a real vCenter. Faults from the SDK
become vmdr errors (``errors.translate``) in ``wait_for_task`` and at the edge
of ``session``/``Connection``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vmdr.model.dspath import DatastoreFile
from vmdr.model.vmdk_uuid import new_vmdk_uuid
from vmdr.providers.vsphere.session import (
    VSphereError,
    objects_of_type,
    retrieve,
    wait_for_task,
)

__all__ = [
    "NewDisk",
    "NoFreeDiskSlot",
    "attach_disk",
    "attach_disks",
    "attached_disks",
    "create_vm",
    "delete_vm",
    "detach_disks",
    "find_vm",
    "power_off",
    "power_on",
    "remove_snapshots",
    "snapshot_names",
    "snapshot_nodes",
    "vm_datastores",
    "vmware_disk_uuid",
]

_CONTROLLER_KEY = 1000


class VmNotFound(VSphereError):
    code = "VMDR-E0603"
    http_status = 404
    msg = "no VM named {name!r} in this vCenter"
    fix = "Refresh discovery; the VM may have been deleted or renamed."


@dataclass(frozen=True)
class NewDisk:
    capacity: int  # bytes
    uuid: str  # VMware form, e.g. 6000C29a-...


def vmware_disk_uuid() -> str:
    """A disk UUID in the form ESX gives them (``6000c29x-...``)."""
    return new_vmdk_uuid()


def find_vm(si: Any, name: str) -> Any:
    from pyVmomi import vim

    for vm in objects_of_type(si, vim.VirtualMachine):
        if retrieve(si, vm, ["name"]).get("name") == name:
            return vm
    raise VmNotFound(name=name)


def _named(si: Any, vimtype: Any, name: str) -> Any:
    for obj in objects_of_type(si, vimtype):
        if retrieve(si, obj, ["name"]).get("name") == name:
            return obj
    raise VSphereError(detail=f"no {vimtype.__name__.split('.')[-1]} named {name!r}")


def power_state(si: Any, vm: Any) -> str:
    return str(retrieve(si, vm, ["runtime.powerState"]).get("runtime.powerState"))


def power_on(si: Any, vm: Any) -> None:
    if power_state(si, vm) != "poweredOn":
        wait_for_task(si, vm.PowerOnVM_Task())


def power_off(si: Any, vm: Any, guest_timeout: float = 300.0) -> str:
    """Shut the guest down cleanly, waiting up to ``guest_timeout`` s, then
    power off hard. Returns how it went off: ``already``, ``guest`` or ``hard``."""
    from pyVmomi import vim, vmodl

    if power_state(si, vm) == "poweredOff":
        return "already"
    try:
        vm.ShutdownGuest()
        deadline = time.monotonic() + guest_timeout
        while time.monotonic() < deadline:
            if power_state(si, vm) == "poweredOff":
                return "guest"
            time.sleep(0.5)
    except (vim.fault.ToolsUnavailable, vim.fault.InvalidState, vmodl.fault.NotSupported):
        pass  # no tools in the guest: straight to a hard power-off
    wait_for_task(si, vm.PowerOffVM_Task())
    return "hard"


def snapshot_nodes(si: Any, vm: Any) -> Iterator[Any]:
    """The VM's snapshot tree, parents before their children
    (``vim.vm.SnapshotTree`` nodes: name, snapshot, quiesced, …)."""
    snap = retrieve(si, vm, ["snapshot"]).get("snapshot")

    def walk(nodes: Any) -> Iterator[Any]:
        for node in nodes or []:
            yield node
            yield from walk(node.childSnapshotList)

    if snap is not None:
        yield from walk(snap.rootSnapshotList)


def snapshot_names(si: Any, vm: Any) -> list[str]:
    return [node.name for node in snapshot_nodes(si, vm)]


def remove_snapshots(si: Any, vm: Any) -> int:
    """Remove every snapshot (reprotect fails on a VM that has any)."""
    count = len(snapshot_names(si, vm))
    if count:
        wait_for_task(si, vm.RemoveAllSnapshots_Task())
    return count


def vm_datastores(si: Any, vm: Any) -> list[str]:
    """Names of the datastores the VM lives on (a change since registration
    of a master target means it was storage-vMotioned)."""
    stores = retrieve(si, vm, ["datastore"]).get("datastore", [])
    return sorted(retrieve(si, ds, ["name"]).get("name", "") for ds in stores)


def _disk_spec(datastore: str, folder: str, unit: int, disk: NewDisk) -> Any:
    from pyVmomi import vim

    backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
        diskMode="persistent",
        thinProvisioned=True,
        uuid=disk.uuid,
        fileName=str(DatastoreFile.of_disk(datastore, folder, unit)),
    )
    device = vim.vm.device.VirtualDisk(
        key=2000 + unit,
        controllerKey=_CONTROLLER_KEY,
        unitNumber=unit,
        capacityInKB=-(-disk.capacity // 1024),
        backing=backing,
    )
    return vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=device)


def create_vm(
    si: Any,
    name: str,
    host: str,
    datastore: str,
    disks: list[NewDisk],
    guest_id: str = "otherGuest64",
    enable_uuid: bool = True,
) -> Any:
    """A powered-off VM on ``host`` with its files on ``datastore`` and one
    PVSCSI controller holding ``disks`` (sizes and UUIDs as given)."""
    from pyVmomi import vim

    host_obj = _named(si, vim.HostSystem, host)
    _named(si, vim.Datastore, datastore)  # refuse an unknown datastore before any task
    datacenter = next(iter(objects_of_type(si, vim.Datacenter)))
    controller = vim.vm.device.VirtualDeviceSpec(
        operation="add",
        device=vim.vm.device.ParaVirtualSCSIController(
            key=_CONTROLLER_KEY, busNumber=0, sharedBus="noSharing"
        ),
    )
    spec = vim.vm.ConfigSpec(
        name=name,
        guestId=guest_id,
        numCPUs=2,
        memoryMB=2048,
        files=vim.vm.FileInfo(vmPathName=f"[{datastore}]"),
        deviceChange=[
            controller,
            *(_disk_spec(datastore, name, i, d) for i, d in enumerate(disks)),
        ],
        extraConfig=[vim.option.OptionValue(key="disk.enableUUID", value=str(enable_uuid).upper())],
    )
    pool = retrieve(si, host_obj, ["parent"])["parent"].resourcePool
    return wait_for_task(
        si, datacenter.vmFolder.CreateVM_Task(config=spec, pool=pool, host=host_obj)
    )


def _add_existing(file: str, controller: int, unit: int, key: int) -> Any:
    """The device change that attaches an existing VMDK at a slot."""
    from pyVmomi import vim

    backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(diskMode="persistent", fileName=file)
    device = vim.vm.device.VirtualDisk(
        key=key, controllerKey=controller, unitNumber=unit, backing=backing
    )
    return vim.vm.device.VirtualDeviceSpec(operation="add", device=device)


def attach_disk(si: Any, vm: Any, file: str, unit: int) -> None:
    """Attach an existing VMDK (``[datastore] folder/disk.vmdk``) at ``unit``."""
    from pyVmomi import vim

    change = _add_existing(file, _CONTROLLER_KEY, unit, key=-100 - unit)
    wait_for_task(si, vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])))


class NoFreeDiskSlot(VSphereError):
    code = "VMDR-E0614"
    http_status = 409
    msg = "VM {vm!r} has {free} free SCSI slot(s) for {wanted} more disk(s)"
    fix = (
        "An appliance VM holds at most 60 disks (4 SCSI controllers of 15): add a SCSI "
        "controller to it, wait for other failbacks to end, or register another master target."
    )


def _devices(si: Any, vm: Any) -> list[Any]:
    return list(retrieve(si, vm, ["config.hardware.device"]).get("config.hardware.device") or [])


def attached_disks(si: Any, vm: Any) -> dict[str, str]:
    """The VM's disks: VMDK file (``[ds] dir/disk.vmdk``) → its UUID (ESX
    reads it from the VMDK; empty if it has none)."""
    return _disk_files(_devices(si, vm))


def _disk_files(devices: list[Any]) -> dict[str, str]:
    from pyVmomi import vim

    return {
        str(getattr(d.backing, "fileName", "")): getattr(d.backing, "uuid", None) or ""
        for d in devices
        if isinstance(d, vim.vm.device.VirtualDisk) and getattr(d.backing, "fileName", None)
    }


def _free_scsi_slots(devices: list[Any]) -> list[tuple[int, int]]:
    """(controller key, unit) pairs free on the VM's SCSI controllers (unit 7
    is the controller's own)."""
    from pyVmomi import vim

    used = _slots(devices)
    return [
        (c.key, unit)
        for c in devices
        if isinstance(c, vim.vm.device.VirtualSCSIController)
        for unit in range(16)
        if unit != 7 and (c.key, unit) not in used
    ]


def attach_disks(si: Any, vm: Any, files: list[str], attempts: int = 5) -> dict[str, str]:
    """Hot-add existing VMDKs to ``vm``, read-write, on free SCSI slots; a
    disk attached already stays as it is (a step run again). Returns each
    file's UUID as the VM sees it.

    Two jobs attaching to the same appliance at once may pick the same free
    slot; vCenter refuses the second: it reads the VM again and retries."""
    from pyVmomi import vim

    for attempt in range(attempts):
        devices = _devices(si, vm)
        present = _disk_files(devices)
        missing = [f for f in dict.fromkeys(files) if f not in present]
        if not missing:
            break
        free = _free_scsi_slots(devices)
        if len(free) < len(missing):
            name = retrieve(si, vm, ["name"]).get("name", "?")
            raise NoFreeDiskSlot(vm=name, free=len(free), wanted=len(missing))
        slots = zip(missing, free, strict=False)  # more free slots than disks
        changes = [_add_existing(file, controller, unit, key=-200 - n)
                   for n, (file, (controller, unit)) in enumerate(slots)]  # fmt: skip
        try:
            wait_for_task(si, vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=changes)))
        except VSphereError:
            raced = _slots(_devices(si, vm)) != _slots(devices)  # someone else attached
            if not raced or attempt == attempts - 1:
                raise
    present = attached_disks(si, vm)
    no_uuid = [f for f in files if not present.get(f)]
    if no_uuid:
        raise VSphereError(detail=f"ESX reports no UUID for {', '.join(no_uuid)}")
    return {f: present[f] for f in files}


def _slots(devices: list[Any]) -> set[tuple[int, int]]:
    return {(d.controllerKey, d.unitNumber) for d in devices if d.unitNumber is not None}


def detach_disks(si: Any, vm: Any, files: list[str]) -> list[str]:
    """Remove these VMDKs from ``vm`` without deleting them; those not
    attached are skipped. Returns the files detached."""
    from pyVmomi import vim

    gone = [
        d
        for d in _devices(si, vm)
        if isinstance(d, vim.vm.device.VirtualDisk)
        and getattr(d.backing, "fileName", None) in set(files)
    ]
    if gone:
        changes = [vim.vm.device.VirtualDeviceSpec(operation="remove", device=d) for d in gone]
        wait_for_task(si, vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=changes)))
    return [str(getattr(d.backing, "fileName", "")) for d in gone]


def delete_vm(si: Any, vm: Any) -> None:
    """Power off (hard) if needed, then destroy the VM and its files."""
    if power_state(si, vm) != "poweredOff":
        wait_for_task(si, vm.PowerOffVM_Task())
    wait_for_task(si, vm.Destroy_Task())
