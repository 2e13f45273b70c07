"""`vmdr server backup` from a running server, `vmdr server restore` onto a
fresh one: the restored server holds the same inventory and can still use
the stored credentials (it discovers the lab's vCenter again)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vmdr.lab.lab import Lab
from vmdr.lab.pair import Service
from vmdr.transport.client import ServiceClient


def cli(svc: Service, *args: str) -> Any:
    token = svc.state / "admin.token"
    env = dict(os.environ, VMDR_SERVER=svc.url, VMDR_TOKEN_FILE=str(token),
               VMDR_CA=str(svc.ca_file))  # fmt: skip
    return subprocess.run([sys.executable, "-m", "vmdr", *args], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip


def wait_job(svc: Service, url: str) -> dict[str, Any]:
    token = (svc.state / "admin.token").read_text()
    with svc.client(token) as c:
        deadline = time.monotonic() + 60
        while (job := c.get(url))["state"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        return job  # type: ignore[no-any-return]


def test_backup_restore_onto_a_fresh_server(lab: Lab, tmp_path: Path) -> None:
    state = lab.state()
    assert state is not None
    vcenter, creds = state.service("vcenter"), lab.credentials()["vcenter"]
    old = Service("configuration-server", [], tmp_path / "old", tmp_path / "pki")
    new = Service("configuration-server", [], tmp_path / "new", tmp_path / "pki")
    old.start()
    new.start()
    try:
        with old.client((old.state / "admin.token").read_text()) as c:
            site = c.post("/v1/sites", {"name": "on-premises", "role": "primary"})
            vc = c.post("/v1/vcenters", {
                "site": site["id"], "name": "vc", "url": vcenter.url, "user": creds["user"],
                "password": creds["password"], "ca_pem": Path(vcenter.details["ca"]).read_text(),
            })  # fmt: skip
            assert (
                wait_job(old, c.post(f"/v1/vcenters/{vc['id']}/discover")["url"])["state"]
                == "succeeded"
            )
            machines = c.get("/v1/machines")
        # A master target registered with the old server (its token shown once).
        passphrase = (old.state / "registration-passphrase").read_text().strip()
        with ServiceClient("cs", old.url, old.ca_file) as anon:
            role = anon.post(
                "/v1/roles/register",
                {
                    "kind": "master-target",
                    "name": "mt-a",
                    "url": "https://127.0.0.1:9",
                    "passphrase": passphrase,
                },
            )
        archive = tmp_path / "cs.backup"
        result = cli(old, "server", "backup", str(archive), "--with-key", "--json")
        assert result.returncode == 0, result.stderr
        assert creds["password"].encode() not in archive.read_bytes()

        damaged = tmp_path / "damaged.backup"
        damaged.write_bytes(archive.read_bytes()[:-40])
        bad = cli(new, "server", "restore", str(damaged), "--json")
        assert bad.returncode == 1 and json.loads(bad.stdout)["error"]["code"] == "VMDR-E0530"

        # The fresh server has its own backup key: the old server's is needed.
        unsigned = cli(new, "server", "restore", str(archive), "--json")
        assert json.loads(unsigned.stdout)["error"]["code"] == "VMDR-E0533"
        shown = cli(old, "server", "backup-key", "--json")
        key_file = tmp_path / "backup.key"  # kept apart from the archives
        key_file.write_text(json.loads(shown.stdout)["key"])
        result = cli(new, "server", "restore", str(archive), "--backup-key", str(key_file),
                     "--json")  # fmt: skip
        assert result.returncode == 0, result.stderr + result.stdout
        assert (new.state / "backup.key").read_text() == key_file.read_text()  # adopted
        with new.client((new.state / "admin.token").read_text()) as c:
            assert c.get("/v1/machines") == machines
            # The role keeps its token: the restored server trusts its heartbeats.
            with ServiceClient("mt", new.url, new.ca_file, role["token"]) as mt:
                assert mt.post("/v1/roles/heartbeat", {"health": {"ok": True}}) == {"ok": True}
            assert c.get("/v1/master-targets")[0]["healthy"] is True
            # Restored with its secret.key, it signs grants with the same key:
            # the roles' --grant-key holds.
            assert c.get("/v1/server/info")["grant_key"] == role["grant_key"]
            # The restored credentials still open the vCenter: discover again.
            job = wait_job(new, c.post(f"/v1/vcenters/{vc['id']}/discover")["url"])
            assert job["state"] == "succeeded", job
        again = cli(new, "server", "restore", str(archive), "--json")  # its key now
        assert json.loads(again.stdout)["error"]["code"] == "VMDR-E0532"
    finally:
        old.stop()
        new.stop()
