"""pyVmomi against the lab's vCenter simulator: login, inventory, the seeds' cases."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from pyVmomi import vim

from vmdr.lab.lab import Lab, vcenter_endpoint
from vmdr.providers.vsphere.session import (
    VSphereLoginFailed,
    objects_of_type,
    retrieve,
    session,
)


def test_login_over_tls_verified_by_lab_ca_and_wrong_password_refused(lab: Lab) -> None:
    endpoint = vcenter_endpoint(lab.directory)
    assert endpoint.url.startswith("https://127.0.0.1:")
    with session(endpoint) as si:
        assert si.content.about.apiType == "VirtualCenter"
    wrong = dataclasses.replace(endpoint, password=endpoint.password + "x")
    with pytest.raises(VSphereLoginFailed) as info, session(wrong):
        pass
    assert info.value.code == "VMDR-E0601"
    assert endpoint.password not in str(info.value)
    assert endpoint.password not in repr(endpoint)


def test_hosts_cluster_and_standalone(lab: Lab) -> None:
    with session(vcenter_endpoint(lab.directory)) as si:
        hosts = objects_of_type(si, vim.HostSystem)
        clustered = [h.name for h in hosts if isinstance(h.parent, vim.ClusterComputeResource)]
        standalone = [h.name for h in hosts if not isinstance(h.parent, vim.ClusterComputeResource)]
    assert len(clustered) == 2
    assert len(standalone) == 1


def test_datastores_have_the_seed_kinds_and_their_mounts(lab: Lab) -> None:
    with session(vcenter_endpoint(lab.directory)) as si:
        found = {}
        for ds in objects_of_type(si, vim.Datastore):
            props = retrieve(si, ds, ["summary.type", "host", "info.url"])
            mounted = {m.key.name for m in props["host"]}
            found[ds.name] = (props["summary.type"], mounted, props["info.url"])
        hosts = {h.name: h for h in objects_of_type(si, vim.HostSystem)}
        standalone = {
            n for n, h in hosts.items() if not isinstance(h.parent, vim.ClusterComputeResource)
        }
    assert {name: kind for name, (kind, _, _) in found.items()} == {
        "vmfs-01": "VMFS",
        "vsan-01": "vsan",
        "nfs-01": "NFS",
    }
    assert found["vmfs-01"][1] == set(hosts)
    assert found["vsan-01"][1] == set(hosts) - standalone
    assert found["nfs-01"][1] == standalone
    for _, _, url in found.values():  # each datastore is a real local folder
        assert Path(url).is_dir()


def _vm_props(si: object, name: str) -> dict:  # type: ignore[type-arg]
    vm = next(v for v in objects_of_type(si, vim.VirtualMachine) if v.name == name)
    return retrieve(
        si,
        vm,
        [
            "config.extraConfig",
            "config.guestId",
            "config.hardware.device",
            "snapshot",
            "runtime.powerState",
            "config.annotation",
        ],
    )


def _enable_uuid(props: dict) -> str | None:  # type: ignore[type-arg]
    values = [o.value for o in props.get("config.extraConfig", []) if o.key == "disk.enableUUID"]
    return values[-1] if values else None  # the simulator appends: the last one wins


def test_lab_vms_cover_the_seed_cases(lab: Lab, lab_inventory: dict) -> None:  # type: ignore[type-arg]
    with session(vcenter_endpoint(lab.directory)) as si:
        names = {v.name for v in objects_of_type(si, vim.VirtualMachine)}
        assert {"web-01", "db-01", "app-01", "legacy-01", "mt-01"} <= names
        web, db = _vm_props(si, "web-01"), _vm_props(si, "db-01")
        app, legacy, mt = (
            _vm_props(si, "app-01"),
            _vm_props(si, "legacy-01"),
            _vm_props(si, "mt-01"),
        )
    assert _enable_uuid(web) == "TRUE"
    assert _enable_uuid(db) is None
    assert _enable_uuid(mt) == "TRUE"
    assert "snapshot" not in web
    assert app["snapshot"].rootSnapshotList[0].name == "before-patch"
    assert legacy["config.guestId"] == "windows7Server64Guest"
    assert "2008 R2 SP1" in legacy["config.annotation"]
    assert web["runtime.powerState"] == "poweredOn"
    # Disk UUIDs set by the lab, as ESX would, and recorded in the inventory.
    disks = [d for d in web["config.hardware.device"] if isinstance(d, vim.vm.device.VirtualDisk)]
    record = next(v for v in lab_inventory["vms"] if v["name"] == "web-01")
    assert sorted(d.backing.uuid for d in disks) == sorted(d["uuid"] for d in record["disks"])
    physical = lab_inventory["physical_servers"]
    assert physical[0]["kind"] == "physical"


def test_disks_are_sparse_flat_vmdks_with_real_content(lab_inventory: dict) -> None:  # type: ignore[type-arg]
    for vm in lab_inventory["vms"]:
        for disk in vm["disks"]:
            flat = Path(disk["flat_path"])
            st = flat.stat()
            assert st.st_size == disk["capacity"] >= 64 * 1024 * 1024
            allocated = st.st_blocks * 512
            assert 0 < disk["data_bytes"] <= allocated < st.st_size  # sparse, not empty
            with open(flat, "rb") as f:
                assert f.read(4096).strip(b"\0"), "first block holds data"
            descriptor = flat.with_name(flat.name.replace("-flat.vmdk", ".vmdk")).read_text()
            assert descriptor.startswith("# Disk DescriptorFile")
            assert f'"{flat.name}"' in descriptor
            hexes = disk["uuid"].replace("-", "")
            assert " ".join(hexes[i : i + 2] for i in range(0, 32, 2)) in descriptor


def test_credentials_file_is_private(lab: Lab) -> None:
    mode = os.stat(lab.directory / "credentials.json").st_mode & 0o777
    assert mode == 0o600
