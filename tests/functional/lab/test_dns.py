"""RFC 2136 updates to the lab's BIND: signed ones apply, others are refused."""

from __future__ import annotations

import base64
import secrets

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from vmdr.lab.lab import Lab


def _dns(lab: Lab) -> tuple[str, int, str, dns.tsig.Key]:
    state = lab.state()
    assert state is not None
    record = state.service("dns")
    creds = lab.credentials()["dns"]
    key = dns.tsig.Key(creds["key_name"], creds["secret"], creds["algorithm"])
    return record.host, record.port, record.details["zone"], key


def _resolve(host: str, port: int, name: str) -> list[str]:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = port
    return sorted(r.to_text() for r in resolver.resolve(name, "A"))


def test_signed_update_reaches_bind(lab: Lab) -> None:
    host, port, zone, key = _dns(lab)
    update = dns.update.UpdateMessage(zone, keyring=key)
    update.replace("signed-test", 30, "A", "198.51.100.7")
    response = dns.query.tcp(update, host, port=port, timeout=5)
    assert response.rcode() == dns.rcode.NOERROR
    assert _resolve(host, port, f"signed-test.{zone}") == ["198.51.100.7"]


def test_unsigned_update_is_refused(lab: Lab) -> None:
    host, port, zone, _ = _dns(lab)
    update = dns.update.UpdateMessage(zone)
    update.replace("web-01", 30, "A", "203.0.113.66")
    response = dns.query.tcp(update, host, port=port, timeout=5)
    assert response.rcode() == dns.rcode.REFUSED
    assert _resolve(host, port, f"web-01.{zone}") == ["192.0.2.11"]


def test_update_with_wrong_secret_is_refused(lab: Lab) -> None:
    host, port, zone, key = _dns(lab)
    forged = dns.tsig.Key(
        key.name, base64.b64encode(secrets.token_bytes(32)).decode(), key.algorithm
    )
    update = dns.update.UpdateMessage(zone, keyring=forged)
    update.replace("web-01", 30, "A", "203.0.113.66")
    with pytest.raises(dns.tsig.PeerBadSignature):
        dns.query.tcp(update, host, port=port, timeout=5)
    assert _resolve(host, port, f"web-01.{zone}") == ["192.0.2.11"]
