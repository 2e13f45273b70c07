"""The configuration server's traffic manager in the lab: probes of two real
HTTP servers (an on-premises and a cloud address on loopback) decide where
the name points; a record changed by hand is left alone; a cutover moves it."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from tests.functional.lab.test_lab_cli import _vmdr
from tests.functional.routing.test_dns_and_probes import resolve, server_of
from tests.helpers import app_servers
from vmdr.lab.lab import Lab


@pytest.fixture
def two_sites() -> Iterator[dict[str, ThreadingHTTPServer]]:
    with app_servers("127.0.0.2", "127.0.0.3") as (onprem, cloud):
        yield {"primary": onprem, "recovery": cloud}


def vmdr_json(lab: Lab, *args: str) -> Any:
    result = _vmdr(lab, *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def wait_for(lab: Lab, name: str, want: list[str], seconds: float = 30) -> None:
    server = server_of(lab)
    deadline = time.monotonic() + seconds
    while resolve(server, name) != want:
        assert time.monotonic() < deadline, (resolve(server, name), want)
        time.sleep(0.3)


def test_probes_route_the_name_and_a_manual_change_is_respected(
    lab: Lab, two_sites: dict[str, ThreadingHTTPServer]
) -> None:
    profile, name = f"shop-{secrets.token_hex(2)}", f"shop-{secrets.token_hex(2)}"
    vmdr_json(lab, "traffic", "create", profile, "--dns-name", name, "--ttl", "5")
    for endpoint, site, address, priority in (
        ("onprem", "primary", "127.0.0.2", "1"),
        ("cloud", "recovery", "127.0.0.3", "2"),
    ):
        port = two_sites[site].server_address[1]
        vmdr_json(
            lab,
            "traffic",
            "add-endpoint",
            profile,
            endpoint,
            "--site",
            site,
            "--address",
            address,
            "--priority",
            priority,
            "--probe",
            f"http:{port}/health",
            "--interval",
            "0.5",
            "--timeout",
            "1",
            "--tolerated",
            "1",
        )
    wait_for(lab, name, ["127.0.0.2"])  # both healthy: the preferred one

    two_sites["primary"].up = False  # type: ignore[attr-defined]
    wait_for(lab, name, ["127.0.0.3"])  # after the tolerated failure
    shown = vmdr_json(lab, "traffic", "show", profile)
    health = {e["name"]: e["healthy"] for e in shown["endpoints"]}
    assert health == {"onprem": False, "cloud": True}
    assert any(
        e["kind"] == "dns" and "127.0.0.2 -> 127.0.0.3" in e["message"] for e in shown["events"]
    )

    # An operator points the name elsewhere by hand; then the primary recovers.
    server = server_of(lab)
    server.replace(name, ["192.0.2.99"], 5, expected=["127.0.0.3"])
    two_sites["primary"].up = True  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while vmdr_json(lab, "traffic", "show", profile)["enabled"]:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert resolve(server, name) == ["192.0.2.99"]  # left as the operator set it
    events = vmdr_json(lab, "traffic", "show", profile)["events"]
    assert any(e["kind"] == "conflict" and "changed outside vmdr" in e["message"] for e in events)

    # A cutover is an explicit decision: it adopts the record and moves it.
    moved = vmdr_json(lab, "traffic", "cutover", profile, "--site", "recovery")
    assert moved["address"] == "127.0.0.3" and moved["enabled"]
    assert resolve(server, name) == ["127.0.0.3"]
    assert [e["name"] for e in moved["endpoints"]] == ["cloud", "onprem"]  # priorities swapped


def test_a_cutover_whose_probe_never_passes_fails_with_its_code(
    lab: Lab, two_sites: dict[str, ThreadingHTTPServer]
) -> None:
    profile, name = f"api-{secrets.token_hex(2)}", f"api-{secrets.token_hex(2)}"
    vmdr_json(lab, "traffic", "create", profile, "--dns-name", name)
    port = two_sites["recovery"].server_address[1]
    two_sites["recovery"].up = False  # type: ignore[attr-defined]
    vmdr_json(
        lab,
        "traffic",
        "add-endpoint",
        profile,
        "cloud",
        "--site",
        "recovery",
        "--address",
        "127.0.0.3",
        "--probe",
        f"http:{port}/health",
        "--interval",
        "60",
        "--timeout",
        "1",
        "--tolerated",
        "0",
    )
    result = _vmdr(
        lab, "traffic", "cutover", profile, "--site", "recovery", "--timeout", "3", "--json"
    )
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "VMDR-E0904" and "did not pass" in error["message"]
    assert resolve(server_of(lab), name) == []  # nothing published


def test_bad_traffic_input_is_refused_with_codes(lab: Lab) -> None:
    for args in (
        ["traffic", "create", "x", "--dns-name", "../etc"],
        ["traffic", "add-endpoint", "nope", "e", "--site", "primary", "--address", "1.2.3.4"],
        ["traffic", "add-endpoint", "nope", "e", "--site", "moon", "--address", "1.2.3.4"],
        [
            "traffic",
            "add-endpoint",
            "nope",
            "e",
            "--site",
            "primary",
            "--address",
            "1.2.3.4",
            "--probe",
            "ftp:21",
        ],
    ):
        result = _vmdr(lab, *args, "--json")
        assert result.returncode in (1, 2), args
        assert json.loads(result.stdout)["error"]["code"] in (
            "VMDR-E0001",
            "VMDR-E0906",
        ), args
