"""Schemathesis against the configuration server's /openapi.json: hundreds
of generated requests (valid and invalid), none may get a 5xx."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import no_server_error, schemathesis
from vmdr.lab.pair import Service


def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    svc = Service("configuration-server", [], tmp_path / "cs", tmp_path / "pki")
    svc.start()
    try:
        token = (tmp_path / "cs" / "admin.token").read_text()
        with svc.client(token) as c:  # some data, so that lists and lookups are not all empty
            c.post("/v1/sites", {"name": "on-premises", "role": "primary"})
        result = schemathesis(f"{svc.url}/openapi.json", token, svc.ca_file, tmp_path)
    finally:
        svc.stop()
    no_server_error(result)
    assert token not in svc.log.read_text()  # and the token never reached the log
