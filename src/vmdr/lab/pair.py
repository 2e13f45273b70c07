"""A master target and a process server on loopback TLS, as real separate
processes started with `vmdr serve …` — for tests and benchmarks, which need
to kill -9 and restart them. (The lab starts its own with ``vmdr.lab.roles``.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vmdr.lab.process import free_port, port_open
from vmdr.roles.byid import by_id_names
from vmdr.transport.client import ServiceClient
from vmdr.transport.grants import (
    MATERIALISE,
    REPLICATE,
    GrantSigner,
    replication_names,
    target_names,
)

__all__ = ["Pair", "Service"]

VMDR: list[str] = [sys.executable, "-m", "vmdr"]


class Service:
    """One `vmdr serve NAME` process that can be killed and started again."""

    def __init__(self, name: str, args: list[str], state: Path, ca_dir: Path) -> None:
        self.name, self.args, self.state, self.ca_dir = name, args, state, ca_dir
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log = state.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> Path:
        return self.ca_dir / "ca.pem"

    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        cmd = [
            *VMDR,
            "serve",
            self.name,
            "--state-dir",
            str(self.state),
            "--port",
            str(self.port),
            "--ca-dir",
            str(self.ca_dir),
            *self.args,
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not listen: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        with_signal = self.proc.poll() is None
        if with_signal:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def passphrase(self) -> str:
        return (self.state / "registration-passphrase").read_text().strip()

    def register(self, name: str) -> str:
        return ServiceClient.register(self.name, self.url, self.ca_file, name, self.passphrase())

    def client(self, token: str | None, timeout: float = 60.0) -> ServiceClient:
        return ServiceClient(self.name, self.url, self.ca_file, token, timeout=timeout)


class Pair:
    """A master target (datastore ``ds1``; its VM's by-id folder ``by_id``,
    where a test "attaches" a disk with ``attach``) and a process server
    sending to it.

    Without a configuration server: the pair trusts ``self.signer``'s grants,
    and ``grant`` signs what a test assigns, as the server's workflows would."""

    def __init__(
        self, root: Path, ps_args: list[str] | None = None, mt_args: list[str] | None = None
    ) -> None:
        self.root = root
        self.ds = root / "ds1"
        self.ds.mkdir(parents=True)
        self.retention = root / "retention"
        self.retention.mkdir()
        self.by_id = root / "by-id"
        self.by_id.mkdir()
        ca = root / "pki"
        self.signer = GrantSigner(Ed25519PrivateKey.generate())
        grant_key = root / "grant-key.pem"
        grant_key.write_text(self.signer.public_pem())
        self.mt = Service(
            "master-target",
            [
                "--datastore",
                f"ds1={self.ds}",
                "--retention-dir",
                str(self.retention),
                "--retention-min-free",
                "1M",
                "--by-id",
                str(self.by_id),
                "--device-wait",
                "2",
                "--grant-key",
                str(grant_key),
                *(mt_args or []),
            ],
            root / "mt",
            ca,
        )
        self.mt.start()
        self.mt_token = self.mt.register("tests")
        token_file = root / "ps-token"
        token_file.write_text(self.mt.register("process-server"))
        token_file.chmod(0o600)
        self.ps = Service(
            "process-server",
            [
                "--master-target",
                self.mt.url,
                "--master-target-ca",
                str(self.mt.ca_file),
                "--master-target-token-file",
                str(token_file),
                "--grant-key",
                str(grant_key),
                *(ps_args or []),
            ],
            root / "ps",
            ca,
        )
        self.ps.start()
        self.ps_token = self.ps.register("tests")

    def replication(self, rid: str, source: str, path: str, **more: Any) -> dict[str, Any]:
        """The body of POST /v1/replications, with its grant (datastore ds1)."""
        return self._replication(rid, source, target_names("ds1", path), more)

    def device_replication(self, rid: str, source: str, disk_uuid: str,
                           **more: Any) -> dict[str, Any]:  # fmt: skip
        """The body of POST /v1/replications to an attached disk, with its grant."""
        return self._replication(rid, source, target_names(device=disk_uuid), more)

    def _replication(self, rid: str, source: str, target: dict[str, Any],
                     more: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        grant = self.signer.sign(REPLICATE, replication_names(rid, source, target))
        return {"id": rid, "source": source, **target, "grant": grant, **more}

    def disk(self, disk: str, path: str, **more: Any) -> dict[str, Any]:
        """The body of PUT /v1/disks/{disk} (datastore ds1), with its grant."""
        return self._disk(disk, target_names("ds1", path), more)

    def device_disk(self, disk: str, disk_uuid: str, **more: Any) -> dict[str, Any]:
        """The body of PUT /v1/disks/{disk} for an attached disk, with its grant."""
        return self._disk(disk, target_names(device=disk_uuid), more)

    def _disk(self, disk: str, target: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
        grant = self.signer.sign(REPLICATE, replication_names(disk, "", target))
        return {**target, "grant": grant, **more}

    def materialise(self, disk: str, point: str, path: str) -> dict[str, Any]:
        """The body of POST /v1/disks/{disk}/materialise, with its grant."""
        return self._materialise(disk, point, target_names("ds1", path))

    def device_materialise(self, disk: str, point: str, disk_uuid: str) -> dict[str, Any]:
        """The body of POST /v1/disks/{disk}/materialise into an attached disk."""
        return self._materialise(disk, point, target_names(device=disk_uuid))

    def _materialise(self, disk: str, point: str, target: dict[str, Any]) -> dict[str, Any]:
        body = {"point": point, **target}
        return {**body, "grant": self.signer.sign(MATERIALISE, {"disk": disk, **body})}

    def attach(self, file: Path, disk_uuid: str) -> None:
        """What ESX and udev do when a disk is hot-added to the master
        target's VM: its by-id names lead to the device (here, ``file``)."""
        for name in by_id_names(disk_uuid)[:2]:
            (self.by_id / name).symlink_to(file)

    def mt_client(self) -> ServiceClient:
        return self.mt.client(self.mt_token)

    def ps_client(self) -> ServiceClient:
        return self.ps.client(self.ps_token)

    def stop(self) -> None:
        self.ps.stop()
        self.mt.stop()

    def wait(self, repl: str, until: Any, timeout: float = 60.0) -> dict[str, Any]:
        """Poll the replication's status until ``until(status)`` holds."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                with self.ps_client() as c:
                    status = c.get(f"/v1/replications/{repl}")
                if until(status):
                    return status
            except Exception as exc:  # the service may be restarting
                status = {"unreachable": str(exc)}
            time.sleep(0.1)
        raise AssertionError(f"timed out; last status {status}; logs in {self.root}")
