"""The traffic manager's two real edges: RFC 2136 updates with TSIG to the
lab's BIND (checked by queries through dnspython), and probes against real
HTTP servers on loopback that go up and down."""

from __future__ import annotations

import base64
import secrets
import socket
from collections.abc import Iterator
from dataclasses import replace
from http.server import ThreadingHTTPServer

import dns.resolver
import pytest

from tests.helpers import app_servers
from vmdr.lab.lab import Lab
from vmdr.routing.dns import DnsRefused, DnsServer, DnsUnreachable, RecordChangedElsewhere
from vmdr.routing.probes import ProbeSpec, probe


def server_of(lab: Lab) -> DnsServer:
    state = lab.state()
    assert state is not None
    record, creds = state.service("dns"), lab.credentials()["dns"]
    return DnsServer(
        record.host,
        record.port,
        record.details["zone"],
        creds["key_name"],
        creds["secret"],
        creds["algorithm"],
    )


def resolve(server: DnsServer, name: str) -> list[str]:
    """An independent look: dnspython's resolver, not vmdr's query."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = [server.host], server.port
    try:
        return sorted(r.to_text() for r in resolver.resolve(server.fqdn(name), "A"))
    except dns.resolver.NXDOMAIN:
        return []


def test_an_update_with_the_right_expectation_moves_the_record(lab: Lab) -> None:
    server = server_of(lab)
    name = f"tm-{secrets.token_hex(3)}"
    server.replace(name, ["198.51.100.10"], 30, expected=[])  # absent before
    assert resolve(server, name) == ["198.51.100.10"] == server.addresses(name)
    server.replace(name, ["203.0.113.20"], 30, expected=["198.51.100.10"])
    assert resolve(server, name) == ["203.0.113.20"]


def test_a_changed_record_is_never_overwritten(lab: Lab) -> None:
    server = server_of(lab)
    name = f"tm-{secrets.token_hex(3)}"
    server.replace(name, ["198.51.100.30"], 30, expected=[])
    # Someone changes it by hand: vmdr's next update expects the old value.
    server.replace(name, ["198.51.100.99"], 30, expected=["198.51.100.30"])
    with pytest.raises(RecordChangedElsewhere) as err:
        server.replace(name, ["203.0.113.30"], 30, expected=["198.51.100.30"])
    assert err.value.code == "VMDR-E0902"
    assert resolve(server, name) == ["198.51.100.99"]  # untouched
    with pytest.raises(RecordChangedElsewhere):  # "absent" is a prerequisite too
        server.replace(name, ["203.0.113.30"], 30, expected=[])
    assert resolve(server, name) == ["198.51.100.99"]


def test_a_wrong_tsig_key_is_refused_and_changes_nothing(lab: Lab) -> None:
    server = server_of(lab)
    name = f"tm-{secrets.token_hex(3)}"
    server.replace(name, ["198.51.100.40"], 30, expected=[])
    forged = replace(server, secret=base64.b64encode(secrets.token_bytes(32)).decode())
    with pytest.raises(DnsRefused) as err:
        forged.replace(name, ["203.0.113.40"], 30, expected=["198.51.100.40"])
    assert err.value.code == "VMDR-E0901"
    other_key = replace(server, key_name="not-the-lab-key")
    with pytest.raises(DnsRefused):
        other_key.replace(name, ["203.0.113.40"], 30, expected=["198.51.100.40"])
    assert resolve(server, name) == ["198.51.100.40"]


def test_a_server_that_does_not_answer_says_so(lab: Lab) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    server = replace(server_of(lab), port=free)
    with pytest.raises(DnsUnreachable) as err:
        server.replace("tm-nowhere", ["198.51.100.50"], 30, expected=[])
    assert err.value.code == "VMDR-E0903"


@pytest.fixture
def app_server() -> Iterator[ThreadingHTTPServer]:
    """An application on 127.0.0.2 whose health endpoint can be turned off."""
    with app_servers("127.0.0.2") as (server,):
        yield server


def test_probes_follow_a_real_server(app_server: ThreadingHTTPServer) -> None:
    port = app_server.server_address[1]
    spec = ProbeSpec(protocol="http", port=port, path="/health", timeout=2)
    assert probe("127.0.0.2", spec).ok
    app_server.up = False  # type: ignore[attr-defined]
    result = probe("127.0.0.2", spec)
    assert not result.ok and "503" in result.detail
    assert probe("127.0.0.2", ProbeSpec(protocol="tcp", port=port, timeout=2)).ok
    app_server.shutdown()
    app_server.server_close()
    assert not probe("127.0.0.2", spec).ok
    assert not probe("127.0.0.2", ProbeSpec(protocol="tcp", port=port, timeout=2)).ok


def test_an_https_probe_checks_the_certificate(lab: Lab) -> None:
    """The lab's configuration server is a real HTTPS endpoint with a
    certificate from the lab's CA."""
    state = lab.state()
    assert state is not None
    cs = state.service("configuration-server")
    spec = ProbeSpec(
        protocol="https", port=cs.port, path="/healthz", timeout=3, ca=cs.details["ca"]
    )
    assert probe("127.0.0.1", spec).ok
    untrusted = probe("127.0.0.1", replace(spec, ca=None))
    assert not untrusted.ok and "CERTIFICATE" in untrusted.detail.upper()
    assert probe("127.0.0.1", replace(spec, ca=None, insecure=True)).ok
