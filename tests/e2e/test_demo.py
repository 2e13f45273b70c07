"""`make demo`'s main job, end to end in a lab of its own: the summary it
prints is what happened, checked against the bytes themselves."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from vmdr.lab.lab import Lab
from vmdr.lab.services import azurite_connection_string

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)  # the whole demo, as long as its own subprocess may take
def test_demo_runs_the_whole_cycle_and_its_summary_is_true(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "demo-lab")
    try:
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "demo.py"), "--dir", str(lab.directory)],
            capture_output=True, text=True, timeout=900,
            env={k: v for k, v in os.environ.items() if not k.startswith("VMDR_")}
            | {"COLUMNS": "220"},
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        rows = {m.group(1): [c.strip() for c in m.group(2).split("│")]
                for m in re.finditer(r"│ (\w+-01)\s*│(.*)│", out)}  # fmt: skip
        # VM, path, size, sent to on-prem, sent back, seconds, verified, state
        web, db, app = rows["web-01"], rows["db-01"], rows["app-01"]
        assert (web[0], web[5], web[6]) == ("OLR", "equal", "Protected")
        assert (db[0], db[5], db[6]) == ("ALR", "equal", "Protected")
        assert (app[0], app[5], app[6]) == ("refused", "VMDR-E0803", "Committed")
        assert "app-01 was refused, as it should be" in out and "1 snapshot" in out
        # The disks the master target wrote were attached to its VM during the
        # failback, and detached once it was done.
        during = re.search(r"disks attached to mt-01 while they replicate home: 3\n"
                           r"((?:\s+\[.*\n){3})", out)  # fmt: skip
        assert during is not None, out
        for disk in ("[vmfs-01] web-01/web-01.vmdk", "[vmfs-01] web-01/web-01_1.vmdk",
                     "[vmfs-01] db-01/db-01.vmdk"):  # fmt: skip
            assert disk in during[1]
        assert "disks attached to mt-01 after failback: none" in out
        # Each sync reads what changed block tracking names, or (the first,
        # and the one after failback) compares the disks whole.
        line = r"(\w+-01) ([\w-]+): read ([\d.]+) MiB of \d+ MiB \(([\w, -]+)\)"
        reads = {f"{m[1]} {m[2]}": (float(m[3]), m[4]) for m in re.finditer(line, out)}
        for vm in ("web-01", "db-01", "app-01"):
            assert reads[f"{vm} initial-replication"][1] == "differential", reads
            read, how = reads[f"{vm} final-sync"]
            assert how == "changed" and 0 < read <= 0.25, reads  # the write, not the disk
        for vm in ("web-01", "db-01"):
            assert reads[f"{vm} delta-sync"][1] == "differential", reads
        # OLR sends a part of the disk; the way back to the cloud only the delta.
        assert 0 < float(web[2]) < float(web[1]) / 2
        for row in (web, db):
            assert 0 < float(row[3]) < 1.0

        # Independent check: the cloud disks, read with the Azure SDK, equal the
        # on-premises disks of the failed-back VMs.
        state = lab.state()
        assert state is not None
        record, creds = state.service("azurite"), lab.credentials()["azurite"]
        env = {"VMDR_LAB_DIR": str(lab.directory)}
        items = subprocess.run(
            [sys.executable, "-m", "vmdr", "items", "list", "--json"], capture_output=True,
            text=True, env={k: v for k, v in os.environ.items() if not k.startswith("VMDR_")} | env,
        )  # fmt: skip
        import json

        from vmdr.lab.state import load_inventory

        roots = {d["name"]: Path(d["path"])
                 for d in load_inventory(lab.directory)["topology"]["datastores"]}  # fmt: skip
        with BlobServiceClient.from_connection_string(
            azurite_connection_string(record, creds), connection_verify=record.details["ca"]
        ) as service:
            for entry in json.loads(items.stdout):
                if entry["vm"] not in ("web-01", "db-01"):
                    continue
                for disk in entry["disks"]:
                    container, name = disk["blob"].split("/")[3:5]
                    blob = service.get_blob_client(container, name).download_blob().readall()
                    ds, _, rel = disk["file"].partition("] ")
                    flat = roots[ds.lstrip("[")] / rel.replace(".vmdk", "-flat.vmdk")
                    assert (
                        hashlib.sha256(blob).digest() == hashlib.sha256(flat.read_bytes()).digest()
                    )
    finally:
        if lab.state() is not None:
            lab.down()
