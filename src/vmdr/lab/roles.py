"""The lab's replication roles, as in a failback: a master target on the
on-premises side, a process server on the cloud side.

- ``master-target``: may write only into the vCenter simulator's datastore
  folders; its retention drive is ``<lab>/retention``.
- ``process-server``: registered with the master target at start (its token
  in ``<lab>/process-server/master-target.token``, mode 0600); its cache of
  outgoing change sets is ``<lab>/process-server/cache``.

The lab itself registers as client ``lab`` with both; the tokens are kept in
``credentials.json`` (mode 0600) for the CLI and tests.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from vmdr.blocks.durable import write_atomically
from vmdr.lab import process
from vmdr.lab.services import HOST, STORAGE_ACCOUNTS_FILE, LabContext, service_failed
from vmdr.lab.state import ServiceRecord
from vmdr.model.errors import VmdrError
from vmdr.transport.client import ServiceClient

__all__ = ["MasterTargetService", "ProcessServerService"]


def _vmdr(*args: str) -> list[str]:
    return [sys.executable, "-m", "vmdr", "serve", *args]


def _start(
    name: str,
    argv: list[str],
    ctx: LabContext,
    port: int,
    state: Path,
    env: dict[str, str] | None = None,
) -> ServiceRecord:
    log = ctx.logs / f"{name}.log"
    record = process.spawn(argv, log, env=env)
    why = process.wait_until(lambda: process.port_open(HOST, port), record, 30)
    if why:
        process.stop(record)
        raise service_failed(name, log, why)
    url = f"https://{HOST}:{port}"
    try:
        passphrase = (state / "registration-passphrase").read_text().strip()
        token = ServiceClient.register(name, url, ctx.ca.cert, "lab", passphrase)
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
        vcenter = ctx.started["vcenter"]
        datastores = [f"{d['name']}={d['path']}" for d in vcenter.details["topology"]["datastores"]]
        state = ctx.directory / self.name
        retention = ctx.directory / "retention"
        retention.mkdir(exist_ok=True)
        argv = _vmdr(
            self.name, "--state-dir", str(state), "--port", str(port),
            "--ca-dir", str(ctx.directory / "pki"), "--retention-dir", str(retention),
            "--retention-min-free", "64M",
            *[arg for ds in datastores for arg in ("--datastore", ds)],
        )  # fmt: skip
        record = _start(self.name, argv, ctx, port, state)
        record.details["datastores"] = datastores
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
        )  # fmt: skip
        # It reads the cloud site's disks: page blobs of the lab's storage account.
        env = dict(os.environ, VMDR_STORAGE_ACCOUNTS=str(ctx.directory / STORAGE_ACCOUNTS_FILE))
        record = _start(self.name, argv, ctx, port, state, env)
        record.details["cache"] = str(state / "cache")
        record.details["master_target"] = mt.url
        return record
