"""Schemathesis against the process server's and the master target's
/openapi.json (the configuration server has its own run): generated
requests, valid and invalid, none may get a 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import no_server_error, schemathesis
from vmdr.lab.pair import Pair


@pytest.mark.parametrize("service", ["master-target", "process-server"])
def test_no_generated_request_gets_a_server_error(pair: Pair, tmp_path: Path, service: str) -> None:
    mt = service == "master-target"
    svc, token = (pair.mt, pair.mt_token) if mt else (pair.ps, pair.ps_token)
    no_server_error(schemathesis(f"{svc.url}/openapi.json", token, svc.ca_file, tmp_path))
    assert token not in svc.log.read_text()
