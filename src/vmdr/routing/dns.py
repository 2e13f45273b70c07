"""DNS records moved by RFC 2136 dynamic updates, signed with TSIG (dnspython).

Every change carries a prerequisite: the record must still hold what vmdr
last saw (or be absent, if it saw nothing). An operator who edited the record
by hand meanwhile makes the server answer NXRRSET/YXRRSET; the zone is left
untouched and the change is refused with ``RecordChangedElsewhere`` — never
silently overwritten. Updates go over TCP (a lost UDP answer would leave the
outcome unknown).

    RoutingError               VMDR-E0900
    ├── DnsRefused             VMDR-E0901  TSIG key wrong or not allowed (NOTAUTH, REFUSED, BADKEY)
    ├── RecordChangedElsewhere VMDR-E0902  the prerequisite failed: someone changed it
    └── DnsUnreachable         VMDR-E0903  no answer from the server
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update

from vmdr.model.errors import VmdrError

__all__ = [
    "DnsRefused",
    "DnsServer",
    "DnsUnreachable",
    "RecordChangedElsewhere",
    "RoutingError",
]

TIMEOUT = 5.0


class RoutingError(VmdrError):
    code = "VMDR-E0900"
    http_status = 502
    msg = "DNS update of {name} failed: {detail}"
    fix = "Read the DNS server's log; the zone was not changed."


class DnsRefused(RoutingError):
    code = "VMDR-E0901"
    msg = "DNS server {server} refused the update of {name}: {detail}"
    fix = (
        "Check the TSIG key name, algorithm and secret given to vmdr, and that the zone's "
        "update-policy lets that key change this name."
    )


class RecordChangedElsewhere(RoutingError):
    code = "VMDR-E0902"
    http_status = 409
    msg = "{name} no longer holds {expected} (changed outside vmdr); it was left as it is"
    fix = (
        "Look at the record (`dig {name}`); if the manual change should stand, disable the "
        "traffic profile, else put the record back and retry the cutover."
    )


class DnsUnreachable(RoutingError):
    code = "VMDR-E0903"
    http_status = 503
    msg = "DNS server {server} did not answer ({detail})"
    fix = "Check that the server runs and that this machine reaches it on TCP and UDP."


@dataclass(frozen=True)
class DnsServer:
    host: str
    port: int
    zone: str
    key_name: str
    secret: str = field(repr=False)
    algorithm: str = "hmac-sha256"

    @classmethod
    def from_spec(cls, spec: dict[str, object]) -> DnsServer:
        secret = str(spec.get("secret") or "")
        if not secret and spec.get("secret_file"):
            secret = Path(str(spec["secret_file"])).read_text().strip()
        base64.b64decode(secret, validate=True)  # refuse a malformed key here, not in a job
        return cls(
            str(spec["server"]),
            int(str(spec["port"])),
            str(spec["zone"]),
            str(spec["key_name"]),
            secret,
            str(spec.get("algorithm") or "hmac-sha256"),
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _key(self) -> dns.tsig.Key:
        return dns.tsig.Key(self.key_name, self.secret, self.algorithm)

    def fqdn(self, name: str) -> str:
        full = dns.name.from_text(name, origin=dns.name.from_text(self.zone))
        return full.to_text(omit_final_dot=True)

    def addresses(self, name: str) -> list[str]:
        """The A records of ``name`` as the authoritative server has them now."""
        query = dns.message.make_query(self.fqdn(name), dns.rdatatype.A)
        try:
            answer = dns.query.tcp(query, self.host, port=self.port, timeout=TIMEOUT)
        except (OSError, dns.exception.DNSException) as exc:
            raise DnsUnreachable(server=self.where, detail=str(exc) or type(exc).__name__) from exc
        out: list[str] = []
        for rrset in answer.answer:
            if rrset.rdtype == dns.rdatatype.A:
                out.extend(r.to_text() for r in rrset)
        return sorted(out)

    def replace(self, name: str, addresses: list[str], ttl: int, expected: list[str]) -> None:
        """Point ``name`` at ``addresses``, only if it still holds ``expected``."""
        fqdn = self.fqdn(name)
        relative = dns.name.from_text(fqdn).relativize(dns.name.from_text(self.zone))
        update = dns.update.UpdateMessage(self.zone, keyring=self._key())
        if expected:
            update.present(relative, dns.rdatatype.A, *expected)
        else:
            update.absent(relative, dns.rdatatype.A)
        update.replace(relative, ttl, dns.rdatatype.A, *addresses)
        try:
            response = dns.query.tcp(update, self.host, port=self.port, timeout=TIMEOUT)
        except (dns.tsig.PeerBadKey, dns.tsig.PeerBadSignature, dns.tsig.PeerBadTime) as exc:
            raise DnsRefused(server=self.where, name=fqdn, detail=type(exc).__name__) from exc
        except (OSError, dns.exception.DNSException) as exc:
            raise DnsUnreachable(server=self.where, detail=str(exc) or type(exc).__name__) from exc
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        if rcode in (dns.rcode.NXRRSET, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN):
            raise RecordChangedElsewhere(name=fqdn, expected=", ".join(expected) or "nothing")
        if rcode in (dns.rcode.NOTAUTH, dns.rcode.REFUSED):
            raise DnsRefused(server=self.where, name=fqdn, detail=dns.rcode.to_text(rcode))
        raise RoutingError(name=fqdn, detail=dns.rcode.to_text(rcode))
