"""Hot-adding disks to an appliance VM through vCenter, and what its Linux
guest sees: the lab's simulator (tools/vcsim) keeps a by-id folder per VM
the way udev names disks for a VM with disk.enableUUID=TRUE; vmdr's
resolver reads it as it reads /dev/disk/by-id on a real appliance."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.functional.providers.helpers import vmfs_folder
from vmdr.lab.lab import Lab, vcenter_endpoint
from vmdr.providers.vsphere.control import (
    NewDisk,
    NoFreeDiskSlot,
    attach_disks,
    attached_disks,
    detach_disks,
    find_vm,
    power_off,
    power_on,
    vmware_disk_uuid,
)
from vmdr.providers.vsphere.errors import VSphereFileError
from vmdr.providers.vsphere.session import session
from vmdr.roles.byid import DeviceFolder, uuid_hex

MiB = 1 << 20


def test_a_hot_added_disk_appears_to_the_appliance_by_its_vmdk_uuid_and_leaves_on_detach(
    lab: Lab, lab_inventory: dict[str, Any], vms: Any
) -> None:
    si, make = vms
    own, source = vmware_disk_uuid(), vmware_disk_uuid()
    appliance = make("hot-add-mt", [NewDisk(16 * MiB, own)])
    make("hot-add-src", [NewDisk(8 * MiB, source)])
    folder = lab.directory / "by-id" / "hot-add-mt"
    vmfs = vmfs_folder(lab_inventory)
    # ESX made the new disks real: a descriptor with the UUID, a sized extent.
    descriptor = (vmfs / "hot-add-src" / "hot-add-src.vmdk").read_text()
    ddb = re.search(r'ddb\.uuid = "([0-9a-fA-F ]+)"', descriptor)
    assert ddb is not None and ddb[1].replace(" ", "") == uuid_hex(source)
    flat = vmfs / "hot-add-src" / "hot-add-src-flat.vmdk"
    assert flat.stat().st_size == 8 * MiB

    power_on(si, appliance)
    devices = DeviceFolder(folder)
    assert devices.find(own) == (vmfs / "hot-add-mt" / "hot-add-mt-flat.vmdk").resolve()

    file = "[vmfs-01] hot-add-src/hot-add-src.vmdk"
    uuids = attach_disks(si, appliance, [file])
    assert uuid_hex(uuids[file]) == uuid_hex(source)  # read from the VMDK, as ESX does
    assert devices.find(source) == flat.resolve()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{kind}{uuid_hex(u)}" for u in (own, source) for kind in ("wwn-0x", "scsi-3")
    )
    assert attach_disks(si, appliance, [file]) == uuids  # again: nothing added
    assert len(attached_disks(si, appliance)) == 2

    assert detach_disks(si, appliance, [file]) == [file]
    assert devices.devices(source) == set() and flat.stat().st_size == 8 * MiB  # file kept
    assert detach_disks(si, appliance, [file]) == []
    power_off(si, appliance, guest_timeout=1)
    assert list(folder.iterdir()) == []  # a stopped guest has no devices


def test_without_disk_enable_uuid_the_guest_sees_no_uuid_until_it_is_set(
    lab: Lab, vms: Any
) -> None:
    from pyVmomi import vim

    from vmdr.providers.vsphere.session import wait_for_task

    si, make = vms
    disk = vmware_disk_uuid()
    vm = make("hot-add-no-uuid", [NewDisk(4 * MiB, disk)], enable_uuid=False)
    power_on(si, vm)
    devices = DeviceFolder(lab.directory / "by-id" / "hot-add-no-uuid")
    assert devices.devices(disk) == set()
    # The E0811 fix: set it (here on the running VM: the simulator allows it).
    option = vim.option.OptionValue(key="disk.enableUUID", value="TRUE")
    wait_for_task(si, vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(extraConfig=[option])))
    assert devices.find(disk, wait=3).name == "hot-add-no-uuid-flat.vmdk"


def test_an_appliance_without_free_scsi_slots_is_refused_before_any_attach(
    lab: Lab, vms: Any
) -> None:
    si, make = vms
    appliance = make("hot-add-full", [NewDisk(MiB, vmware_disk_uuid())])
    files = [f"[vmfs-01] elsewhere/disk{i}.vmdk" for i in range(15)]  # 14 slots are free
    with pytest.raises(NoFreeDiskSlot) as err:
        attach_disks(si, appliance, files)
    assert err.value.code == "VMDR-E0614" and "14 free" in err.value.message
    assert len(attached_disks(si, appliance)) == 1


def test_an_attach_vcenter_refuses_is_an_error_with_its_code_and_nothing_attached(
    lab: Lab, vms: Any
) -> None:
    si, make = vms
    appliance = make("hot-add-refused", [NewDisk(MiB, vmware_disk_uuid())])
    with pytest.raises(VSphereFileError) as err:
        attach_disks(si, appliance, ["[vmfs-01] no-such-vm/no-such-vm.vmdk"])
    assert err.value.code == "VMDR-E0609" and "no-such-vm" in err.value.message
    assert len(attached_disks(si, appliance)) == 1


def test_two_jobs_attaching_to_one_appliance_at_once_both_get_their_disks(
    lab: Lab, vms: Any
) -> None:
    """Each picks a free slot from what it read; vCenter refuses the second
    on the same slot, which then reads again and takes another."""
    import threading

    si, make = vms
    appliance = make("hot-add-busy", [NewDisk(MiB, vmware_disk_uuid())])
    files = []
    for n in range(4):
        make(f"hot-add-src{n}", [NewDisk(MiB, vmware_disk_uuid())])
        files.append(f"[vmfs-01] hot-add-src{n}/hot-add-src{n}.vmdk")
    errors: list[BaseException] = []

    def attach(file: str) -> None:
        try:
            with session(vcenter_endpoint(lab.directory)) as own:
                attach_disks(own, find_vm(own, "hot-add-busy"), [file])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=attach, args=(f,)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(f for f in attached_disks(si, appliance) if "src" in f) == files
    detach_disks(si, appliance, files)
