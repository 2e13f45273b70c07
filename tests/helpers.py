"""Helpers shared by the functional and end-to-end tests: the `vmdr` CLI run
against a lab with `--json`, and small HTTP applications on loopback
addresses whose health endpoint a test can turn off (traffic manager probes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from vmdr.lab.lab import Lab

__all__ = [
    "Health",
    "add_site_endpoints",
    "app_servers",
    "blob_client",
    "blob_service",
    "running_lab",
    "snapshot_count",
    "vmdr_json",
    "wait_resolves",
]


@contextmanager
def running_lab(folder: Path, session: pytest.Session | None = None) -> Iterator[Lab]:
    """A populated lab in ``folder`` for the duration of the block.

    Given the test ``session``, the folder is removed after the lab stops
    if no test has failed so far: a lab's disks and logs take GiBs, and a
    whole suite's labs left behind fill a CI machine's disk. A failure keeps
    them for a look."""
    lab = Lab(folder)
    lab.up()
    try:
        yield lab
    finally:
        lab.down()
    if session is not None and session.testsfailed == 0:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def blob_service(lab: Lab) -> Iterator[Any]:
    """The Azure SDK's service client for the lab's storage account."""
    from azure.storage.blob import BlobServiceClient

    from vmdr.lab.services import azurite_connection_string

    state = lab.state()
    assert state is not None
    record, creds = state.service("azurite"), lab.credentials()["azurite"]
    with BlobServiceClient.from_connection_string(
        azurite_connection_string(record, creds), connection_verify=record.details["ca"]
    ) as service:
        yield service


@contextmanager
def blob_client(lab: Lab, url: str) -> Iterator[Any]:
    """The Azure SDK's client for a lab page blob or one of its snapshots
    (``pageblob://ACCOUNT/CONTAINER/BLOB[?snapshot=TS]``): tests read the
    cloud disks with it, independently of vmdr's own backends."""
    base, _, snapshot = url.partition("?snapshot=")
    container, name = base.split("/")[3:5]
    with blob_service(lab) as service:
        yield service.get_blob_client(
            container, name, snapshot=snapshot.replace("%3A", ":") or None
        )


def snapshot_count(lab: Lab, url: str) -> int:
    """How many snapshots the page blob at ``url`` has, listed by the SDK."""
    container, name = url.partition("?")[0].split("/")[3:5]
    with blob_service(lab) as service:
        listed = service.get_container_client(container).list_blobs(
            name_starts_with=name, include=["snapshots"]
        )
        return sum(1 for b in listed if b.name == name and b.snapshot)


def vmdr_json(lab: Lab, *args: str, timeout: float = 900, **more_env: str) -> tuple[int, Any]:
    """Run ``vmdr ARGS --json`` against the lab; its exit status and JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMDR_")}
    env.update(VMDR_LAB_DIR=str(lab.directory), XDG_CONFIG_HOME=str(lab.directory / "xdg"))
    env.update(more_env)
    result = subprocess.run(
        [sys.executable, "-m", "vmdr", *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    return result.returncode, json.loads(result.stdout) if result.stdout.strip() else None


class Health(BaseHTTPRequestHandler):
    """200 on /health while ``server.up``, else 503."""

    def do_GET(self) -> None:
        code = 200 if self.path == "/health" and self.server.up else 503  # type: ignore[attr-defined]
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def app_servers(*addresses: str) -> Iterator[list[ThreadingHTTPServer]]:
    """One application per address (e.g. 127.0.0.2 on-premises, 127.0.0.3 cloud)."""
    servers = []
    try:
        for address in addresses:
            server = ThreadingHTTPServer((address, 0), Health)
            server.up = True  # type: ignore[attr-defined]
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
        yield servers
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def add_site_endpoints(lab: Lab, profile: str, servers: list[ThreadingHTTPServer]) -> None:
    """An on-premises (priority 1) and a cloud (priority 2) endpoint on the
    first two servers, each probed every second."""
    for name, site, server, priority in (("onprem", "primary", servers[0], "1"),
                                         ("cloud", "recovery", servers[1], "2")):  # fmt: skip
        address, port = server.server_address[:2]
        code, out = vmdr_json(
            lab, "traffic", "add-endpoint", profile, name, "--site", site, "--address",
            str(address), "--priority", priority, "--probe", f"http:{port}/health",
            "--interval", "1", "--timeout", "1",
        )  # fmt: skip
        assert code == 0, out


def wait_resolves(lab: Lab, name: str, addresses: list[str], timeout: float = 30) -> Any:
    """Wait until the lab's BIND answers ``name`` with ``addresses``; the DNS
    server's address, for later lookups."""
    import time

    from tests.functional.routing.test_dns_and_probes import resolve, server_of

    dns = server_of(lab)
    deadline = time.monotonic() + timeout
    while resolve(dns, name) != addresses:
        assert time.monotonic() < deadline, f"{name} never resolved to {addresses}"
        time.sleep(0.3)
    return dns


def schemathesis(openapi_url: str, token: str, ca_file: Path, cwd: Path) -> Any:
    """Schemathesis against a service's /openapi.json with its token: 25
    generated requests per operation, valid and invalid; the run's result."""
    command = str(Path(sys.executable).parent / "schemathesis")
    return subprocess.run(
        [command, "run", openapi_url, "-H", f"Authorization: Bearer {token}",
         "--tls-verify", str(ca_file), "--checks", "not_a_server_error", "-n", "25",
         "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=cwd,
    )  # fmt: skip


def no_server_error(result: Any) -> None:
    """What every schemathesis run must show: nothing failed."""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.split("SUMMARY")[-1]
