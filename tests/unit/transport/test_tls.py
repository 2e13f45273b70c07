from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from vmdr.transport.tls import client_context, ensure_ca, issue_server_cert, server_context


def _handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, peer: list[bytes] | None = None
) -> str:
    """A TLS handshake over loopback; what the server sent. ``peer`` gets the
    certificate the client met (DER)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port)) as raw,
                client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                if peer is not None:
                    der = tls.getpeercert(binary_form=True)
                    assert der is not None
                    peer.append(der)
                return tls.recv(2).decode()
        finally:
            thread.join(5)


def test_ca_is_made_once_with_a_private_key(tmp_path: Path) -> None:
    ca = ensure_ca(tmp_path)
    assert (ca.key.stat().st_mode & 0o777) == 0o600
    first = ca.cert.read_bytes()
    assert ensure_ca(tmp_path).cert.read_bytes() == first


def test_certificate_from_the_ca_is_trusted_and_others_are_not(tmp_path: Path) -> None:
    ca = ensure_ca(tmp_path / "a")
    pair = issue_server_cert(ca, tmp_path / "a", "svc")
    assert _handshake(server_context(pair), client_context(ca.cert)) == "ok"
    other = ensure_ca(tmp_path / "b")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server_context(pair), client_context(other.cert))


def _peer_serial(server_ctx: ssl.SSLContext, ca_file: Path) -> int:
    """The serial of the certificate a handshake with ``server_ctx`` meets."""
    from cryptography import x509

    peer: list[bytes] = []
    assert _handshake(server_ctx, client_context(ca_file), peer) == "ok"
    return x509.load_der_x509_certificate(peer[0]).serial_number


def test_a_certificate_near_its_end_or_for_other_names_is_issued_again(tmp_path: Path) -> None:
    import datetime as dt

    from cryptography import x509

    from vmdr.transport.tls import needs_renewal

    ca = ensure_ca(tmp_path)
    short = issue_server_cert(ca, tmp_path, "svc", ["127.0.0.1"], validity=dt.timedelta(days=10))
    assert needs_renewal(short, ca, ["127.0.0.1"]) == "it expires in 9 days"
    renewed = issue_server_cert(ca, tmp_path, "svc", ["127.0.0.1"])
    cert = x509.load_pem_x509_certificate(renewed.cert.read_bytes())
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=800)
    assert needs_renewal(renewed, ca, ["127.0.0.1"]) is None
    assert needs_renewal(renewed, ca, ["127.0.0.1", "cs.example"]) == "it does not name cs.example"
    named = issue_server_cert(ca, tmp_path, "svc", ["127.0.0.1", "cs.example"])
    assert needs_renewal(named, ca, ["127.0.0.1", "cs.example"]) is None
    other = ensure_ca(tmp_path / "new-ca")
    assert needs_renewal(named, other, ["127.0.0.1"]) == "it was not issued by this CA"


def test_a_running_service_presents_its_renewed_certificate(tmp_path: Path) -> None:
    """What the service's certificate thread does: after a renewal (or an
    operator's new --cert file), handshakes meet the new certificate without
    a restart."""
    import datetime as dt

    from vmdr.transport.service import ServiceSettings, refresh_certificate

    settings = ServiceSettings("svc", tmp_path, "127.0.0.1", 1)
    ca = ensure_ca(settings.pki)
    first = issue_server_cert(ca, settings.pki, "svc", ["127.0.0.1", "localhost"],
                              validity=dt.timedelta(days=5))  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(first.cert, first.key)  # as the service started
    seen = (first.cert.stat().st_mtime_ns, first.key.stat().st_mtime_ns)
    before = _peer_serial(ctx, ca.cert)
    assert refresh_certificate(ctx, settings, seen) != seen  # renewed: 5 days left
    after = _peer_serial(ctx, ca.cert)
    assert after != before
    assert first.cert.exists()  # the same files, new content
