"""Control operations against the lab's vCenter simulator: create → attach →
power cycle → snapshots → delete, each checked by reading the vCenter back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vmdr.lab.lab import Lab, vcenter_endpoint
from vmdr.lab.populate import descriptor, vmware_disk_uuid
from vmdr.providers.vsphere.control import (
    NewDisk,
    VmNotFound,
    attach_disk,
    create_vm,
    delete_vm,
    find_vm,
    power_off,
    power_on,
    power_state,
    remove_snapshots,
    snapshot_names,
    vm_datastores,
)
from vmdr.providers.vsphere.discovery import discover
from vmdr.providers.vsphere.session import session, wait_for_task

MiB = 1 << 20


def test_alternate_location_vm_life(lab: Lab, lab_inventory: dict[str, Any]) -> None:
    vmfs = Path(next(d["path"] for d in lab_inventory["topology"]["datastores"]
                     if d["name"] == "vmfs-01"))  # fmt: skip
    uuids = [vmware_disk_uuid(), vmware_disk_uuid()]
    with session(vcenter_endpoint(lab.directory)) as si:
        vm = create_vm(si, "alr-web-01", "esx-02", "vmfs-01",
                       [NewDisk(64 * MiB, uuids[0]), NewDisk(32 * MiB, uuids[1])])  # fmt: skip
        try:
            found = {v.name: v for v in discover(si).vms}["alr-web-01"]
            assert found.host == "esx-02" and found.enable_uuid is True
            assert [(d.uuid, d.capacity) for d in found.disks] == [
                (uuids[0], 64 * MiB), (uuids[1], 32 * MiB),
            ]  # fmt: skip
            assert vm_datastores(si, vm) == ["vmfs-01"]
            # Attach an existing disk (written by vmdr, as a failback would).
            extra = vmfs / "alr-web-01" / "extra-flat.vmdk"
            extra.write_bytes(b"\1" * MiB)
            (vmfs / "alr-web-01" / "extra.vmdk").write_text(
                descriptor(extra.name, MiB, vmware_disk_uuid())
            )
            attach_disk(si, vm, "[vmfs-01] alr-web-01/extra.vmdk", unit=2)
            disks = {v.name: v for v in discover(si).vms}["alr-web-01"].disks
            assert [d.file for d in disks][-1] == "[vmfs-01] alr-web-01/extra.vmdk"
            power_on(si, vm)
            assert power_state(si, vm) == "poweredOn"
            assert power_off(si, vm, guest_timeout=2) in ("guest", "hard")
            assert power_state(si, vm) == "poweredOff"
            assert power_off(si, vm) == "already"
            wait_for_task(si, vm.CreateSnapshot_Task(name="s1", memory=False, quiesce=False))
            assert snapshot_names(si, vm) == ["s1"]
            assert remove_snapshots(si, vm) == 1 and snapshot_names(si, vm) == []
        finally:
            delete_vm(si, vm)
        with pytest.raises(VmNotFound) as err:
            find_vm(si, "alr-web-01")
        assert err.value.code == "VMDR-E0603"
        # app-01's snapshot from the lab is seen (reprotect must refuse it).
        assert snapshot_names(si, find_vm(si, "app-01")) == ["before-patch"]


def test_privileges_and_session_renewal(lab: Lab) -> None:
    from vmdr.providers.vsphere.privileges import missing_privileges
    from vmdr.providers.vsphere.session import Connection, retrieve

    endpoint = vcenter_endpoint(lab.directory)
    with Connection(endpoint) as conn:
        assert conn.call(lambda si: missing_privileges(si, endpoint.user)) == []
        # An administrator ends our session: the next call logs in again, once.
        conn.si.content.sessionManager.Logout()
        name = conn.call(lambda si: retrieve(si, si.content.rootFolder, ["name"])["name"])
        assert name and conn.renewals == 1
