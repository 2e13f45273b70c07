"""Discovery against the lab's vCenter simulator, checked against what the
lab created (its inventory.json), not against itself."""

from __future__ import annotations

from typing import Any

from vmdr.lab.lab import Lab, vcenter_endpoint
from vmdr.providers.vsphere.discovery import discover
from vmdr.providers.vsphere.session import session


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
    for built in lab_inventory["vms"]:
        vm = found[built["name"]]
        assert vm.host == built["host"]
        assert vm.guest_id == built["guest_id"]
        assert vm.enable_uuid == (built["enable_uuid"] == "TRUE" if built["enable_uuid"] else None)
        assert vm.snapshots == (1 if built["snapshot"] else 0)
        assert [(d.uuid, d.capacity) for d in vm.disks] == [
            (d["uuid"], d["capacity"]) for d in built["disks"]
        ]
        assert all(d.datastore == built["datastore"] for d in vm.disks)
