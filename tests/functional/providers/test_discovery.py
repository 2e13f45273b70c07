"""Discovery against the lab's vCenter simulator, checked against what the
lab created (its inventory.json), not against itself."""

from __future__ import annotations

from typing import Any

import pytest

from vmdr.lab.lab import Lab, vcenter_endpoint
from vmdr.providers.vsphere.discovery import discover
from vmdr.providers.vsphere.session import session, wait_for_task


def test_discovery_matches_what_the_lab_built(lab: Lab, lab_inventory: dict[str, Any]) -> None:
    with session(vcenter_endpoint(lab.directory)) as si:
        inv = discover(si)
    hosts = {h["name"]: h for h in inv.hosts}
    assert {"esx-01", "esx-02", "esx-sa-01"} <= set(hosts)
    assert hosts["esx-01"]["cluster"] == "cluster-01" and hosts["esx-sa-01"]["cluster"] is None
    stores = {d["name"]: d for d in inv.datastores}
    assert stores["vsan-01"]["type"].lower() == "vsan"
    assert "esx-sa-01" in stores["nfs-01"]["hosts"]
    found = {vm.name: vm for vm in inv.vms}
    built_here = [vm for vm in lab_inventory["vms"] if vm["endpoint"] == "vcenter"]
    assert sorted(found) == sorted(vm["name"] for vm in built_here)
    for built in built_here:
        vm = found[built["name"]]
        assert vm.host == built["host"]
        assert vm.guest_id == built["guest_id"]
        assert vm.enable_uuid == (built["enable_uuid"] == "TRUE" if built["enable_uuid"] else None)
        assert vm.snapshots == (1 if built["snapshot"] else 0)
        assert [(d.uuid, d.capacity) for d in vm.disks] == [
            (d["uuid"], d["capacity"]) for d in built["disks"]
        ]
        assert all(d.datastore == built["datastore"] for d in vm.disks)
        # The lab puts every disk on one paravirtual SCSI controller, flat.
        assert [(d.address, d.controller, d.backing) for d in vm.disks] == [
            (f"scsi0:{unit}", "pvscsi", "flat") for unit in range(len(built["disks"]))
        ]
        assert vm.datastores == [built["datastore"]]
        assert vm.annotation == (built["annotation"] or None)
    assert inv.api_type == "VirtualCenter" and inv.datacenters == ["DC0"]
    assert inv.clusters == [
        {"name": "cluster-01", "moref": inv.clusters[0]["moref"], "hosts": ["esx-01", "esx-02"]}
    ]
    assert hosts["esx-sa-01"]["standalone"] and not hosts["esx-01"]["standalone"]
    # VMFS can hold RDM mappings; vSAN and NFS cannot (the ALR precheck reads it).
    assert {n: d["rdm_supported"] for n, d in stores.items()} == {
        "vmfs-01": True, "vsan-01": False, "nfs-01": False,
    }  # fmt: skip
    assert {n: d["type"] for n, d in stores.items()} == {
        "vmfs-01": "VMFS", "vsan-01": "vsan", "nfs-01": "NFS",
    }  # fmt: skip


def test_discovery_of_an_esx_host_without_vcenter(lab: Lab, lab_inventory: dict[str, Any]) -> None:
    with session(vcenter_endpoint(lab.directory, name="esx")) as si:
        inv = discover(si)
    assert inv.api_type == "HostAgent" and inv.datacenters == ["ha-datacenter"]
    assert inv.clusters == []
    assert [(h["name"], h["standalone"]) for h in inv.hosts] == [("esx-branch-01", True)]
    assert [(d["name"], d["type"], d["hosts"]) for d in inv.datastores] == [
        ("branch-local", "VMFS", ["esx-branch-01"])
    ]
    built = {vm["name"]: vm for vm in lab_inventory["vms"] if vm["endpoint"] == "esx"}
    assert [vm.name for vm in inv.vms] == sorted(built) == ["branch-01"]
    (vm,) = inv.vms
    assert vm.host == "esx-branch-01"
    assert [d.uuid for d in vm.disks] == [d["uuid"] for d in built["branch-01"]["disks"]]


def test_a_vsphere_fault_reaches_the_caller_as_a_vmdr_error(lab: Lab) -> None:
    from vmdr.providers.vsphere.control import find_vm, power_state
    from vmdr.providers.vsphere.errors import VSphereInvalidState

    with session(vcenter_endpoint(lab.directory)) as si:
        web = find_vm(si, "web-01")
        assert power_state(si, web) == "poweredOn"
        with pytest.raises(VSphereInvalidState) as err:
            wait_for_task(si, web.PowerOnVM_Task())  # on already: InvalidPowerState
        assert err.value.code == "VMDR-E0608"
    # A call made inside ``session`` that raises the SDK's fault leaves it translated.
    with pytest.raises(VSphereInvalidState), session(vcenter_endpoint(lab.directory)) as si:
        find_vm(si, "legacy-01").ShutdownGuest()  # powered off: InvalidPowerState
        raise AssertionError("shutting down a VM that is off must fail")
