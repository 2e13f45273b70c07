"""Right after `vmdr lab up`, the CLI finds the lab's configuration server and
token by itself, and the lab's vCenter has been discovered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from vmdr.lab.lab import Lab


def _vmdr(lab: Lab, *args: str, env: dict[str, str] | None = None) -> Any:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VMDR_SERVER")}
    base.update(VMDR_LAB_DIR=str(lab.directory), XDG_CONFIG_HOME=str(lab.directory / "xdg"))
    return subprocess.run(
        [sys.executable, "-m", "vmdr", *args], capture_output=True, text=True,
        env=base | (env or {}), timeout=60,
    )  # fmt: skip


def test_machines_list_works_without_flags(lab: Lab, lab_inventory: dict[str, Any]) -> None:
    result = _vmdr(lab, "machines", "list", "--json")
    assert result.returncode == 0, result.stderr
    machines = {m["name"]: m for m in json.loads(result.stdout)}
    assert set(machines) >= {vm["name"] for vm in lab_inventory["vms"]}
    web = machines["web-01"]
    assert [d["uuid"] for d in web["disks"]] == [
        d["uuid"] for d in next(v for v in lab_inventory["vms"] if v["name"] == "web-01")["disks"]
    ]
    # In a pipe: plain tab-separated lines, one per machine.
    plain = _vmdr(lab, "machines", "list")
    assert plain.returncode == 0 and "web-01\tvm\t" in plain.stdout
    sites = json.loads(_vmdr(lab, "sites", "list", "--json").stdout)
    assert {s["role"] for s in sites} == {"primary", "recovery"}
    jobs = json.loads(_vmdr(lab, "jobs", "list", "--json").stdout)
    assert any(j["kind"] == "discover" and j["state"] == "succeeded" for j in jobs)


def test_no_server_known_says_how_to_fix_it(lab: Lab, tmp_path: Path) -> None:
    result = _vmdr(lab, "machines", "list", env={"VMDR_LAB_DIR": str(tmp_path / "none")})
    assert result.returncode == 2
    assert "VMDR-E0550" in result.stderr and "vmdr lab up" in result.stderr


def test_wrong_token_exits_with_the_code(lab: Lab, tmp_path: Path) -> None:
    state = lab.state()
    assert state is not None
    record = state.service("configuration-server")
    bad = tmp_path / "token"
    bad.write_text("not-a-token")
    result = _vmdr(lab, "hosts", "list", "--json", env={
        "VMDR_SERVER": record.url, "VMDR_TOKEN_FILE": str(bad), "VMDR_CA": record.details["ca"],
    })  # fmt: skip
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["status"]) == ("VMDR-E0351", 401)


def test_lab_roles_are_registered_and_beat(lab: Lab) -> None:
    for kind in ("process-servers", "master-targets"):
        result = _vmdr(lab, kind, "list", "--json")
        assert result.returncode == 0, result.stderr
        (role,) = json.loads(result.stdout)
        assert role["name"] == "lab" and role["healthy"] is True, role
    (mt,) = json.loads(_vmdr(lab, "master-targets", "list", "--json").stdout)
    assert mt["health"]["retention"]["ready"] is True
    # No datastore folder: it writes only disks attached to its VM.
    assert mt["health"]["datastores"] == []
    # Its own VM, as discovery found it (the seeds' rules on the master target).
    vm = mt["vm"]
    assert (vm["name"], vm["discovered"], vm["enable_uuid"], vm["snapshots"]) == (
        "mt-01", True, True, 0,
    )  # fmt: skip
    assert vm["disks"] == 2 and vm["datastores"] == ["vmfs-01"]
    assert vm["datastores_at_registration"] == ["vmfs-01"] and vm["storage_vmotioned"] is False


def test_the_standalone_esx_host_is_discovered_by_address(lab: Lab) -> None:
    endpoints = {v["name"]: v for v in json.loads(_vmdr(lab, "vcenters", "list", "--json").stdout)}
    esx = endpoints["esx-branch-01"]
    assert esx["kind"] == "esx" and esx["topology"]["api_type"] == "HostAgent"
    assert esx["topology"]["datacenters"] == ["ha-datacenter"]
    assert endpoints["vcenter-lab"]["topology"]["clusters"] == [
        {"name": "cluster-01", "hosts": ["esx-01", "esx-02"]}
    ]
    machines = {m["name"]: m for m in json.loads(_vmdr(lab, "machines", "list", "--json").stdout)}
    assert machines["branch-01"]["vcenter"] == esx["id"]
    assert machines["web-01"]["vcenter"] == endpoints["vcenter-lab"]["id"]
    hosts = {h["name"]: h for h in json.loads(_vmdr(lab, "hosts", "list", "--json").stdout)}
    assert hosts["esx-branch-01"]["vcenter"] == esx["id"]


def test_a_heartbeat_speaks_only_for_its_role(lab: Lab) -> None:
    import pytest

    from vmdr.transport.client import RemoteError, ServiceClient

    state = lab.state()
    assert state is not None
    cs = state.service("configuration-server")
    admin = lab.credentials()["configuration-server"]["token"]
    ca = Path(cs.details["ca"])
    with ServiceClient("cs", cs.url, ca, admin) as c, pytest.raises(RemoteError) as err:
        c.post("/v1/roles/heartbeat", {"health": {"forged": True}})
    assert err.value.status == 403 and err.value.remote_code == "VMDR-E0542"
    rogue = {"kind": "master-target", "name": "rogue", "url": "https://10.0.0.1", "passphrase": "x"}
    with ServiceClient("cs", cs.url, ca) as anon, pytest.raises(RemoteError) as err:
        anon.post("/v1/roles/register", rogue)
    assert err.value.status == 403 and err.value.remote_code == "VMDR-E0352"


def test_the_server_says_which_cloud_compute_runs_and_its_grant_key(lab: Lab) -> None:
    """The data plane's cloud compute is a setting (the lab's here), shown by
    the server and by `vmdr lab status`; the grant key the server gives its
    roles is the one they were started with."""
    result = _vmdr(lab, "server", "info", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    compute = info["dataplane"]["cloud_compute"]
    assert compute["driver"] == "lab" and str(lab.directory / "cloud-vms") in compute["where"]
    assert (info["database"], info["dataplane"]["storage_account"]) == ("sqlite", "vmdrlab")
    state = lab.state()
    assert state is not None
    for role in ("process-server", "master-target"):
        key = Path(state.service(role).details["state"]) / "configuration-server.grant-key.pem"
        assert key.read_text() == info["grant_key"], role
    status = json.loads(_vmdr(lab, "lab", "status", "--json").stdout)
    assert status["cloud_compute"] == compute
