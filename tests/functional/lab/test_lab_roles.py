"""The lab's process server (cloud side) replicates a cloud disk into a
datastore of the on-premises site through the lab's master target."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vmdr.blocks.copy import FullCopy
from vmdr.blocks.urls import open_backend
from vmdr.blocks.verify import Verify
from vmdr.control.secrets import SecretBox
from vmdr.lab.lab import Lab
from vmdr.transport.client import RemoteError, ServiceClient
from vmdr.transport.grants import REPLICATE


def _client(lab: Lab, name: str) -> ServiceClient:
    state = lab.state()
    assert state is not None
    record = state.service(name)
    token = lab.credentials()[name]["token"]
    return ServiceClient(name, record.url, Path(record.details["ca"]), token)


def _datastores(lab: Lab) -> dict[str, Path]:
    state = lab.state()
    assert state is not None
    specs = state.service("master-target").details["datastores"]
    return {name: Path(path) for name, _, path in (s.partition("=") for s in specs)}


def test_lab_roles_replicate_a_page_blob_into_a_datastore(
    lab: Lab, lab_inventory: dict[str, Any], account: str
) -> None:
    web = next(vm for vm in lab_inventory["vms"] if vm["name"] == "web-01")
    disk = Path(web["disks"][1]["flat_path"])
    blob = f"pageblob://{account}/replicas/lab-roles-web-01-disk1"
    with open_backend(f"file://{disk}") as src, open_backend(blob, "rw", create=True) as dst:
        if dst.size() < src.size():
            dst.resize(src.size())
        FullCopy(src, dst).run()
    datastores = _datastores(lab)
    assert {"vmfs-01", "vsan-01", "nfs-01"} <= set(datastores)
    with _client(lab, "master-target") as mt:
        assert mt.get("/v1/retention")["used_bytes"] >= 0
    names = {"id": "lab-roles", "source": blob, "datastore": "vmfs-01",
             "path": "failback/web-01_1-flat.vmdk"}  # fmt: skip
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
        signer = SecretBox.in_folder(Path(state.service("configuration-server").details["state"]))
        grant = signer.grant_signer().sign(REPLICATE, {**names, "disk": "lab-roles"})
        ps.post("/v1/replications", {**names, "interval": 3600, "grant": grant})
        deadline = time.monotonic() + 60
        while not (status := ps.get("/v1/replications/lab-roles"))["initial_done"]:
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
    target = datastores["vmfs-01"] / "failback/web-01_1-flat.vmdk"
    with open_backend(blob) as a, open_backend(f"file://{target}") as b:
        Verify(a, b).run()
