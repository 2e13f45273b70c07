"""Changed block tracking through vCenter: snapshots carry changeIds and
QueryChangedDiskAreas names what the guest wrote between two of them. The
lab's simulator (tools/vcsim/cbt.go) answers from the change logs the lab's
guest writer keeps, as ESX answers from its -ctk.vmdk files."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.functional.providers.helpers import MiB, data_segments, vmfs_folder
from vmdr.lab import guest
from vmdr.lab.lab import Lab, vcenter_endpoint
from vmdr.providers.vsphere.cbt import (
    ALL_DATA,
    ChangeTrackingReset,
    Snapshot,
    changed_areas,
    enable_tracking,
    remove_snapshot,
    remove_stale_snapshots,
    take_snapshot,
)
from vmdr.providers.vsphere.control import NewDisk, snapshot_names, vmware_disk_uuid
from vmdr.providers.vsphere.session import wait_for_task

FILE = "[vmfs-01] {vm}/{vm}.vmdk"


def _disk(vms: Any, lab_inventory: dict[str, Any], name: str, size: int) -> tuple[Any, Path]:
    _, make = vms
    vm = make(name, [NewDisk(size, vmware_disk_uuid())])
    return vm, vmfs_folder(lab_inventory) / name / f"{name}-flat.vmdk"


def _tracked(
    vms: Any, lab_inventory: dict[str, Any], name: str, size: int
) -> tuple[Any, Path, str, Snapshot]:
    """A VM with one disk, tracking changes, and a first snapshot."""
    si, _ = vms
    vm, flat = _disk(vms, lab_inventory, name, size)
    enable_tracking(si, vm)
    return vm, flat, FILE.format(vm=name), take_snapshot(si, vm, "vmdr-protect-a", quiesce=False)


def test_changed_areas_are_what_the_guest_wrote_between_two_snapshots(
    lab: Lab, lab_inventory: dict[str, Any], vms: Any
) -> None:
    si, _ = vms
    vm, flat = _disk(vms, lab_inventory, "cbt-basic", 8 * MiB)
    file = FILE.format(vm="cbt-basic")
    guest.write(flat, 0, b"before tracking" * 100)  # not tracked: CBT is off

    assert enable_tracking(si, vm) is True
    assert enable_tracking(si, vm) is False  # again: nothing reset
    first = take_snapshot(si, vm, "vmdr-protect-1", quiesce=False)
    disk = first.disks[file]
    assert disk.capacity == 8 * MiB and disk.change_id.endswith("/0")
    # "*": the areas holding data, as the file system holds them.
    everything = changed_areas(si, vm, first, disk, ALL_DATA)
    assert everything == data_segments(flat) and everything[0][0] == 0

    guest.write(flat, 1 * MiB, b"a" * 4096)
    guest.write(flat, 5 * MiB + 100, b"b" * 100)
    guest.write(flat, 1 * MiB + 2048, b"c" * 4096)  # overlaps the first: one area
    second = take_snapshot(si, vm, "vmdr-protect-2", quiesce=False)
    since_first = changed_areas(si, vm, second, second.disks[file], disk.change_id)
    assert since_first == [(1 * MiB, 6144), (5 * MiB + 100, 100)]

    guest.write(flat, 2 * MiB, b"after the snapshot")  # the next cycle's, not this one's
    assert changed_areas(si, vm, second, second.disks[file], disk.change_id) == since_first
    third = take_snapshot(si, vm, "vmdr-protect-3", quiesce=False)
    latest = changed_areas(si, vm, third, third.disks[file], second.disks[file].change_id)
    assert latest == [(2 * MiB, len(b"after the snapshot"))]
    # The first snapshot still carries its own changeId.
    assert first.disks[file].change_id != third.disks[file].change_id

    remove_snapshot(si, third)
    assert snapshot_names(si, vm) == ["vmdr-protect-1", "vmdr-protect-2"]
    remove_snapshot(si, third)  # again: already gone
    assert remove_stale_snapshots(si, vm, "vmdr-protect-") == 2
    assert snapshot_names(si, vm) == []


def test_a_reset_change_tracking_refuses_the_old_change_id_with_its_code(
    lab: Lab, lab_inventory: dict[str, Any], vms: Any
) -> None:
    from pyVmomi import vim

    si, _ = vms
    vm, flat, file, before = _tracked(vms, lab_inventory, "cbt-reset", 4 * MiB)
    off = vim.vm.ConfigSpec(changeTrackingEnabled=False)
    wait_for_task(si, vm.ReconfigVM_Task(spec=off))
    assert not guest.change_log(flat).exists()
    assert enable_tracking(si, vm) is True
    guest.write(flat, 0, b"x" * 512)
    after = take_snapshot(si, vm, "vmdr-protect-b", quiesce=False)
    with pytest.raises(ChangeTrackingReset) as err:
        changed_areas(si, vm, after, after.disks[file], before.disks[file].change_id)
    assert err.value.code == "VMDR-E0615" and "cbt-reset" in err.value.message
    assert changed_areas(si, vm, after, after.disks[file], after.disks[file].change_id) == []


def test_a_long_answer_comes_in_windows_and_the_client_gets_every_area(
    lab: Lab, lab_inventory: dict[str, Any], vms: Any
) -> None:
    """vCenter answers at most so many areas at a time (the lab's 4,096)."""
    si, _ = vms
    vm, flat, file, before = _tracked(vms, lab_inventory, "cbt-many", 48 * MiB)
    offsets = [i * 8192 for i in range(4100)]
    for offset in offsets:
        guest.write(flat, offset, b"z" * 10)
    after = take_snapshot(si, vm, "vmdr-protect-b", quiesce=False)
    areas = changed_areas(si, vm, after, after.disks[file], before.disks[file].change_id)
    assert areas == [(o, 10) for o in offsets]


def test_the_point_label_says_what_the_snapshot_is(
    lab: Lab, lab_inventory: dict[str, Any], vms: Any
) -> None:
    si, _ = vms
    vm, _ = _disk(vms, lab_inventory, "cbt-quiesce", MiB)
    assert take_snapshot(si, vm, "vmdr-protect-q", quiesce=True).consistency == "app"
    assert take_snapshot(si, vm, "vmdr-protect-c", quiesce=False).consistency == "crash"


def test_query_changed_disk_areas_needs_a_session(lab: Lab) -> None:
    endpoint = vcenter_endpoint(lab.directory)
    body = (
        b'<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv='
        b'"http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
        b'<QueryChangedDiskAreas xmlns="urn:vim25"><_this type="VirtualMachine">vm-1</_this>'
        b"<deviceKey>2000</deviceKey><startOffset>0</startOffset><changeId>*</changeId>"
        b"</QueryChangedDiskAreas></soapenv:Body></soapenv:Envelope>"
    )
    request = urllib.request.Request(
        endpoint.url,  # https://host:port/sdk
        data=body,
        headers={"Content-Type": "text/xml", "SOAPAction": "urn:vim25/8.0"},
    )
    context = ssl.create_default_context(cafile=endpoint.ca_file)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, context=context, timeout=10)
    assert err.value.code == 500 and b"NotAuthenticated" in err.value.read()


def test_a_cycle_leaves_the_vms_own_snapshots_and_disks_as_they_were(
    lab: Lab, lab_inventory: dict[str, Any], vms: Any
) -> None:
    """A VM with a snapshot of its own (which reprotect will refuse until it
    is removed): cycles' snapshots come and go, the VM's stays, and removing
    it afterwards removes no disk (the simulator's file keys are reused once
    a snapshot is removed: see tools/vcsim/cbt.go guardSnapshotFiles)."""
    from vmdr.providers.vsphere.cbt import cycle_snapshot
    from vmdr.providers.vsphere.control import power_off, power_on, remove_snapshots

    si, _ = vms
    vm, flat = _disk(vms, lab_inventory, "cbt-own-snapshot", MiB)
    file = FILE.format(vm="cbt-own-snapshot")
    guest.write(flat, 0, b"the application's data")
    wait_for_task(si, vm.CreateSnapshot_Task(name="before-upgrade", memory=False, quiesce=False))
    for job in ("job-1", "job-2"):
        cycle_snapshot(si, vm, job, False, {file: ""})
        assert snapshot_names(si, vm) == ["before-upgrade", f"vmdr-protect-{job}"]
        assert remove_stale_snapshots(si, vm, "vmdr-protect-") == 1
        power_on(si, vm)
        power_off(si, vm, guest_timeout=1)
    assert snapshot_names(si, vm) == ["before-upgrade"]
    assert remove_snapshots(si, vm) == 1
    assert snapshot_names(si, vm) == []
    assert flat.read_bytes()[:22] == b"the application's data"
