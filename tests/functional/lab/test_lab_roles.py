"""The lab's process server (cloud side) replicates a cloud disk into a VMDK
that vCenter hot-added to the lab's master target VM (mt-01): the path a
failback takes, without the configuration server's workflows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vmdr.blocks.copy import FullCopy
from vmdr.blocks.urls import open_backend
from vmdr.blocks.verify import Verify
from vmdr.control.secrets import SecretBox
from vmdr.lab.lab import Lab, vcenter_endpoint
from vmdr.lab.roles import LAB_MASTER_TARGET_VM
from vmdr.providers.vsphere.control import (
    NewDisk,
    attach_disks,
    create_vm,
    delete_vm,
    detach_disks,
    find_vm,
    vmware_disk_uuid,
)
from vmdr.providers.vsphere.session import session
from vmdr.transport.client import RemoteError, ServiceClient
from vmdr.transport.grants import REPLICATE


def _client(lab: Lab, name: str) -> ServiceClient:
    state = lab.state()
    assert state is not None
    record = state.service(name)
    token = lab.credentials()[name]["token"]
    return ServiceClient(name, record.url, Path(record.details["ca"]), token)


def test_lab_roles_replicate_a_page_blob_into_a_disk_attached_to_the_master_target(
    lab: Lab, lab_inventory: dict[str, Any], account: str
) -> None:
    web = next(vm for vm in lab_inventory["vms"] if vm["name"] == "web-01")
    disk = Path(web["disks"][1]["flat_path"])
    blob = f"pageblob://{account}/replicas/lab-roles-web-01-disk1"
    with open_backend(f"file://{disk}") as src, open_backend(blob, "rw", create=True) as dst:
        if dst.size() < src.size():
            dst.resize(src.size())
        FullCopy(src, dst).run()
    vmfs = Path(next(d["path"] for d in lab_inventory["topology"]["datastores"]
                     if d["name"] == "vmfs-01"))  # fmt: skip
    file = "[vmfs-01] lab-roles-target/lab-roles-target.vmdk"
    with session(vcenter_endpoint(lab.directory)) as si:
        # A new VM's disk (ALR), attached to the master target's VM.
        target_vm = create_vm(si, "lab-roles-target", "esx-01", "vmfs-01",
                              [NewDisk(disk.stat().st_size, vmware_disk_uuid())])  # fmt: skip
        appliance = find_vm(si, LAB_MASTER_TARGET_VM)
        try:
            device = attach_disks(si, appliance, [file])[file]
            names = {"id": "lab-roles", "source": blob, "device": device}
            with _client(lab, "process-server") as ps:
                # Without the configuration server's grant the roles touch nothing.
                try:
                    ps.post("/v1/replications", {**names, "interval": 3600})
                    raise AssertionError("a replication without a grant was accepted")
                except RemoteError as exc:
                    assert (exc.status, exc.remote_code) == (403, "VMDR-E0360")
                # The test signs as the lab's configuration server would (its key).
                state = lab.state()
                assert state is not None
                cs_state = Path(state.service("configuration-server").details["state"])
                grant = (
                    SecretBox.in_folder(cs_state)
                    .grant_signer()
                    .sign(REPLICATE, {**names, "disk": "lab-roles"})
                )
                ps.post("/v1/replications", {**names, "interval": 3600, "grant": grant})
                deadline = time.monotonic() + 60
                while not (status := ps.get("/v1/replications/lab-roles"))["initial_done"]:
                    assert time.monotonic() < deadline, status
                    time.sleep(0.2)
                ps.delete("/v1/replications/lab-roles", params={"forget_target": "true"})
            target = vmfs / "lab-roles-target" / "lab-roles-target-flat.vmdk"
            with open_backend(blob) as a, open_backend(f"file://{target}") as b:
                assert Verify(a, b).run().equal
        finally:
            detach_disks(si, appliance, [file])
            delete_vm(si, target_vm)
