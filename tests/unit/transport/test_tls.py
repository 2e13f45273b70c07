from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from vmdr.transport.tls import client_context, ensure_ca, issue_server_cert, server_context


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> str:
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
