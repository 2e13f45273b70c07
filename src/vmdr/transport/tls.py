"""Certificates for vmdr's services: a private CA made on first use, and server certificates.

Every vmdr service speaks HTTPS only. Where no certificates are given, vmdr makes
its own certificate authority in the state folder (``ca.pem`` and a key readable
by the owner only) and issues each service a certificate for the names it listens
on. Clients trust that CA file, never "any certificate": a lab is as strict about
TLS as production.

A certificate vmdr issued is issued again, with a new key, when it expires
within ``RENEW_BEFORE``, no longer names every host the service listens on,
or was not signed by the CA in the folder (a new CA): at start, and while
the service runs (``transport.service``). An operator's own ``--cert`` is
read again when its file changes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vmdr.blocks.durable import write_atomically

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
_VALIDITY = dt.timedelta(days=825)
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_ca(directory: Path, common_name: str = "vmdr private CA") -> CertPair:
    """Return the CA in ``directory``, creating it on first use."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = CertPair(directory / CA_CERT, directory / CA_KEY)
    if pair.cert.exists() and pair.key.exists():
        return pair
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    write_atomically(pair.key, _key_pem(key))
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pair


def needs_renewal(pair: CertPair, ca: CertPair, hosts: list[str]) -> str | None:
    """Why the certificate vmdr issued must be issued again, or None."""
    try:
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return f"unreadable: {exc}"
    if key.public_key() != cert.public_key():
        return "its key is not the certificate's"
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    if left < RENEW_BEFORE:
        return f"it expires in {left.days} days"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "it was not issued by this CA"
    try:
        named = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "it names no host"
    have = {str(v) for v in named.get_values_for_type(x509.IPAddress)}
    have |= set(named.get_values_for_type(x509.DNSName))
    missing = sorted(set(hosts) - have)
    return f"it does not name {', '.join(missing)}" if missing else None


def issue_server_cert(
    ca: CertPair,
    directory: Path,
    name: str,
    hosts: list[str] | None = None,
    validity: dt.timedelta = _VALIDITY,
) -> CertPair:
    """Issue ``name.pem`` for ``hosts``, or reuse it while it holds
    (``needs_renewal``)."""
    hosts = hosts or ["127.0.0.1", "localhost"]
    pair = CertPair(directory / f"{name}.pem", directory / f"{name}-key.pem")
    if pair.cert.exists() and pair.key.exists() and needs_renewal(pair, ca, hosts) is None:
        return pair
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("vmdr CA keys are EC keys")
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    # The key first, then the certificate: a reader that sees the new
    # certificate finds its key (a crash between leaves the old certificate,
    # which no longer matches, and it is issued again at the next start).
    write_atomically(pair.key, _key_pem(key))
    write_atomically(pair.cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return pair


def client_context(ca_file: Path) -> ssl.SSLContext:
    """A client context that trusts only ``ca_file``, TLS 1.2 or newer."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def server_context(pair: CertPair) -> ssl.SSLContext:
    """A server context for ``pair``, TLS 1.2 or newer."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(pair.cert), str(pair.key))
    return ctx
