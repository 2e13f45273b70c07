"""Schemathesis against the configuration server's /openapi.json: hundreds
of generated requests (valid and invalid), none may get a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vmdr.lab.pair import Service

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    svc = Service("configuration-server", [], tmp_path / "cs", tmp_path / "pki")
    svc.start()
    try:
        token = (tmp_path / "cs" / "admin.token").read_text()
        with svc.client(token) as c:  # some data, so that lists and lookups are not all empty
            c.post("/v1/sites", {"name": "on-premises", "role": "primary"})
        result = subprocess.run(
            [SCHEMATHESIS, "run", f"{svc.url}/openapi.json", "-H", f"Authorization: Bearer {token}",
             "--tls-verify", str(svc.ca_file), "--checks", "not_a_server_error", "-n", "25",
             "--no-color"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )  # fmt: skip
    finally:
        svc.stop()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.split("SUMMARY")[-1]
    assert token not in svc.log.read_text()  # and the token never reached the log
