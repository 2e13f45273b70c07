"""Schemathesis against the process server's and the master target's
/openapi.json (the configuration server has its own run): generated
requests, valid and invalid, none may get a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vmdr.lab.pair import Pair

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


@pytest.mark.parametrize("service", ["master-target", "process-server"])
def test_no_generated_request_gets_a_server_error(pair: Pair, tmp_path: Path, service: str) -> None:
    mt = service == "master-target"
    svc, token = (pair.mt, pair.mt_token) if mt else (pair.ps, pair.ps_token)
    result = subprocess.run(
        [SCHEMATHESIS, "run", f"{svc.url}/openapi.json", "-H", f"Authorization: Bearer {token}",
         "--tls-verify", str(svc.ca_file), "--checks", "not_a_server_error", "-n", "25",
         "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.split("SUMMARY")[-1]
    assert token not in svc.log.read_text()
