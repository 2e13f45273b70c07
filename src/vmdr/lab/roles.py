"""The lab's replication roles, as in a failback: a master target on the
on-premises side, a process server on the cloud side.

- ``master-target``: writes only the disks vCenter attaches to its VM
  ``mt-01``, found in the by-id folder the simulator keeps for it
  (``<lab>/by-id/mt-01``); no datastore folder; its retention drive is
  ``<lab>/retention``.
- ``process-server``: registered with the master target at start (its token
  in ``<lab>/process-server/master-target.token``, mode 0600); its cache of
  outgoing change sets is ``<lab>/process-server/cache``.

The lab itself registers as client ``lab`` with both; the tokens are kept in
``credentials.json`` (mode 0600) for the CLI and tests.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from vmdr.blocks.durable import write_atomically
from vmdr.lab import process
from vmdr.lab.services import (
    ESX_HOST_NAME,
    HOST,
    STORAGE_ACCOUNTS_FILE,
    LabContext,
    service_failed,
)
from vmdr.lab.state import ServiceRecord
from vmdr.model.errors import VmdrError
from vmdr.transport.client import ServiceClient

__all__ = ["ConfigurationServerService", "MasterTargetService", "ProcessServerService"]


LAB_MASTER_TARGET_VM = "mt-01"


def _vmdr(*args: str) -> list[str]:
    return [sys.executable, "-m", "vmdr", "serve", *args]


def _register_with_cs(ctx: LabContext, kind: str, port: int, state: Path) -> list[str]:
    """Register a role with the lab's configuration server (its one-time
    passphrase, read from its state folder); the flags for its heartbeats and
    for the key that signs the disks it may touch."""
    cs = ctx.started["configuration-server"]
    passphrase = (Path(cs.details["state"]) / "registration-passphrase").read_text().strip()
    body = {"kind": kind, "name": "lab", "url": f"https://{HOST}:{port}", "passphrase": passphrase}
    if kind == "master-target":
        body["vm"] = LAB_MASTER_TARGET_VM  # the VM it "runs in" (lab/populate.py)
    with ServiceClient(cs.name, cs.url, ctx.ca.cert) as client:
        answer = client.post("/v1/roles/register", body)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    token_file = state / "configuration-server.token"
    write_atomically(token_file, answer["token"].encode())
    grant_key = state / "configuration-server.grant-key.pem"
    write_atomically(grant_key, answer["grant_key"].encode())
    return [
        "--configuration-server", cs.url, "--configuration-server-ca", str(ctx.ca.cert),
        "--configuration-server-token-file", str(token_file), "--grant-key", str(grant_key),
    ]  # fmt: skip


def _start(
    name: str,
    argv: list[str],
    ctx: LabContext,
    port: int,
    state: Path,
    env: dict[str, str] | None = None,
    register: bool = True,
) -> ServiceRecord:
    log = ctx.logs / f"{name}.log"
    record = process.spawn(argv, log, env=env)
    why = process.wait_until(lambda: process.port_open(HOST, port), record, 30)
    if why:
        process.stop(record)
        raise service_failed(name, log, why)
    url = f"https://{HOST}:{port}"
    try:
        if register:
            passphrase = (state / "registration-passphrase").read_text().strip()
            token = ServiceClient.register(name, url, ctx.ca.cert, "lab", passphrase)
        else:  # the configuration server makes its own admin token
            token = (state / "admin.token").read_text().strip()
    except (OSError, VmdrError) as exc:
        process.stop(record)
        raise service_failed(name, log, f"registration failed: {exc}") from exc
    ctx.credentials[name] = {"token": token}
    return ServiceRecord(
        name=name,
        process=record,
        host=HOST,
        port=port,
        url=url,
        log=str(log),
        details={"ca": str(ctx.ca.cert), "state": str(state)},
    )


class MasterTargetService:
    name = "master-target"

    def check_dependencies(self) -> None:
        pass  # it is vmdr itself

    def start(self, ctx: LabContext, port: int) -> ServiceRecord:
        state = ctx.directory / self.name
        retention = ctx.directory / "retention"
        retention.mkdir(exist_ok=True)
        argv = _vmdr(
            self.name, "--state-dir", str(state), "--port", str(port),
            "--ca-dir", str(ctx.directory / "pki"), "--retention-dir", str(retention),
            "--retention-min-free", "64M",
            # No datastore folders: it writes only the disks vCenter attaches
            # to its VM, which appear here (tools/vcsim/byid.go).
            "--by-id", str(ctx.directory / "by-id" / LAB_MASTER_TARGET_VM),
            *_register_with_cs(ctx, self.name, port, state),
        )  # fmt: skip
        record = _start(self.name, argv, ctx, port, state)
        record.details["retention"] = str(retention)
        return record


class ProcessServerService:
    name = "process-server"

    def check_dependencies(self) -> None:
        pass

    def start(self, ctx: LabContext, port: int) -> ServiceRecord:
        mt = ctx.started["master-target"]
        state = ctx.directory / self.name
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        token_file = state / "master-target.token"
        passphrase = (Path(mt.details["state"]) / "registration-passphrase").read_text().strip()
        token = ServiceClient.register(mt.name, mt.url, ctx.ca.cert, "process-server", passphrase)
        write_atomically(token_file, token.encode())
        argv = _vmdr(
            self.name, "--state-dir", str(state), "--port", str(port),
            "--ca-dir", str(ctx.directory / "pki"), "--master-target", mt.url,
            "--master-target-ca", str(ctx.ca.cert),
            "--master-target-token-file", str(token_file),
            *_register_with_cs(ctx, self.name, port, state),
        )  # fmt: skip
        # It reads the cloud site's disks: page blobs of the lab's storage account.
        env = dict(os.environ, VMDR_STORAGE_ACCOUNTS=str(ctx.directory / STORAGE_ACCOUNTS_FILE))
        record = _start(self.name, argv, ctx, port, state, env)
        record.details["cache"] = str(state / "cache")
        record.details["master_target"] = mt.url
        return record


class ConfigurationServerService:
    """The configuration server, on the on-premises side, SQLite in its state
    folder. After the lab is populated, ``register_lab`` tells it about the
    sites and the lab's vCenter and runs a discovery, so that ``vmdr machines
    list`` answers right after ``vmdr lab up``."""

    name = "configuration-server"

    def check_dependencies(self) -> None:
        pass

    def start(self, ctx: LabContext, port: int) -> ServiceRecord:
        state = ctx.directory / self.name
        argv = _vmdr(
            self.name, "--state-dir", str(state), "--port", str(port),
            "--ca-dir", str(ctx.directory / "pki"),
        )  # fmt: skip
        # The admin token is written before the port opens (app start-up). Its
        # workflows write the cloud site's disks: page blobs of the lab's account.
        env = dict(os.environ, VMDR_STORAGE_ACCOUNTS=str(ctx.directory / STORAGE_ACCOUNTS_FILE))
        return _start(self.name, argv, ctx, port, state, env, register=False)


def register_lab(ctx: LabContext, timeout: float = 120.0) -> dict[str, str]:
    """Sites, the lab's vCenter and standalone ESX host (passwords sealed by
    the server), a discovery of each."""
    cs = ctx.started["configuration-server"]
    creds = ctx.credentials
    with ServiceClient(cs.name, cs.url, ctx.ca.cert, creds[cs.name]["token"]) as client:
        # Idempotent: a lab brought up again in the same folder keeps its
        # configuration server's database; the endpoints' addresses are new.
        sites = {s["name"]: s for s in client.get("/v1/sites")}
        for name, role in (("on-premises", "primary"), ("cloud", "recovery")):
            if name not in sites:
                sites[name] = client.post("/v1/sites", {"name": name, "role": role})
        site = sites["on-premises"]
        known = {v["name"]: v for v in client.get("/v1/vcenters")}
        ids = {"site": site["id"]}
        for service, name, kind in (
            ("vcenter", "vcenter-lab", "vcenter"),
            ("esx", ESX_HOST_NAME, "esx"),
        ):
            record = ctx.started[service]
            access = {
                "url": record.url, "user": creds[service]["user"],
                "password": creds[service]["password"], "ca_pem": ctx.ca.cert.read_text(),
            }  # fmt: skip
            if name in known:
                vc = client.request("PATCH", f"/v1/vcenters/{known[name]['id']}", json=access)
            else:
                vc = client.post(
                    "/v1/vcenters", {"site": site["id"], "name": name, "kind": kind, **access}
                )
            _discover(client, cs, vc["id"], timeout)
            ids[service] = vc["id"]
    write_dataplane(ctx)
    return ids


def write_dataplane(ctx: LabContext) -> Path:
    """Tell the configuration server's workflows where the lab's data plane is
    (control/dataplane.py): the datastore folders, the storage account, the
    cloud compute folder, and the roles with a token each (the lab's own,
    written 0600 into the server's state folder)."""
    cs = ctx.started["configuration-server"]
    state = Path(cs.details["state"])
    datastores = {
        d["name"]: d["path"]
        for service in ("vcenter", "esx")
        for d in ctx.started[service].details["topology"]["datastores"]
    }
    roles = {}
    for key, service in (("process_server", "process-server"), ("master_target", "master-target")):
        token_file = state / f"{service}.token"
        write_atomically(token_file, ctx.credentials[service]["token"].encode())
        roles[key] = {"url": ctx.started[service].url, "ca": str(ctx.ca.cert),
                      "token_file": str(token_file)}  # fmt: skip
    dns, dns_creds = ctx.started["dns"], ctx.credentials["dns"]
    secret_file = state / "dns-tsig.secret"
    write_atomically(secret_file, dns_creds["secret"].encode())
    plane = {
        "dns": {
            "server": dns.host,
            "port": dns.port,
            "zone": dns.details["zone"],
            "key_name": dns_creds["key_name"],
            "algorithm": dns_creds["algorithm"],
            "secret_file": str(secret_file),
        },
        "datastores": datastores,
        "storage_account": ctx.credentials["azurite"]["account"],
        "container": "vmdr-replicas",
        "cloud_compute": {"driver": "lab", "folder": str(ctx.directory / "cloud-vms")},
        **roles,
    }
    path = state / "dataplane.json"
    write_atomically(path, json.dumps(plane, indent=2).encode())
    return path


def _discover(client: ServiceClient, cs: ServiceRecord, vcenter: str, timeout: float) -> None:
    job = client.post(f"/v1/vcenters/{vcenter}/discover")
    deadline = time.monotonic() + timeout
    while not (status := client.get(job["url"]))["finished"]:
        if time.monotonic() > deadline:
            raise service_failed(cs.name, Path(cs.log), "discovery did not finish")
        time.sleep(0.1)
    if status["state"] != "succeeded":
        raise service_failed(cs.name, Path(cs.log), f"discovery failed: {status['error']}")
