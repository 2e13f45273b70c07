"""How the configuration server serves its dashboard: the pages without a
token (they hold no data) and with a strict policy; everything else still
needs the token; no way out of the pages' folder; the login check."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from vmdr.lab.pair import Service


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str]]:
    tmp = tmp_path_factory.mktemp("dashboard")
    svc = Service("configuration-server", [], tmp / "cs", tmp / "pki")
    svc.start()
    yield svc, (tmp / "cs" / "admin.token").read_text().strip()
    svc.stop()


def tls(svc: Service) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(svc.ca_file))


def raw_get(
    svc: Service, path: str, host: str = "127.0.0.1", method: str = "GET"
) -> tuple[int, bytes]:
    """A request with the path and Host sent exactly as given (httpx would
    normalise ``..``), over the service's TLS."""
    with (
        socket.create_connection(("127.0.0.1", svc.port)) as sock,
        tls(svc).wrap_socket(sock, server_hostname="127.0.0.1") as conn,
    ):
        conn.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_pages_need_no_token_and_carry_a_strict_policy(server: tuple[Service, str]) -> None:
    svc, _ = server
    with httpx.Client(base_url=svc.url, verify=tls(svc)) as http:
        root = http.get("/")
        assert root.status_code == 303 and root.headers["location"] == "/ui/"
        page = http.get("/ui/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/ui/static/js/app.js">' in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        script = http.get("/ui/static/js/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        # The pages hold no data; the API behind them still wants the token.
        assert http.get("/v1/protected-items").status_code == 401
        assert http.get("/v1/session").status_code == 401


def test_no_path_leaves_the_pages_folder_or_skips_the_token(server: tuple[Service, str]) -> None:
    svc, _ = server
    for path in (
        "/ui/../v1/jobs",
        "/ui/static/../../v1/jobs",
        "/ui/static/../../api.py",
        "/ui/static/%2e%2e/%2e%2e/api.py",
        "/ui/static/..%2f..%2fapi.py",
        "/ui/static/js/../../../dashboard.py",
    ):
        status, body = raw_get(svc, path)
        assert status in (400, 404), (path, status)
        assert b"import" not in body and b'"id"' not in body, path
    # A path merely starting like the pages is not open either.
    status, _ = raw_get(svc, "/uix/v1/jobs")
    assert status == 401
    # Nor is an API path behind a Host header that ends like the pages.
    for host in ("127.0.0.1/ui/", "x/ui/"):
        status, body = raw_get(svc, "/v1/protected-items", host=host)
        assert status in (400, 401), (host, status)
        assert b'"id"' not in body
    # Pages are only read: anything else under /ui/ still needs the token.
    status, _ = raw_get(svc, "/ui/static/js/app.js", method="POST")
    assert status == 401


def test_the_login_check_names_the_tokens_owner_and_role(server: tuple[Service, str]) -> None:
    svc, token = server
    with httpx.Client(base_url=svc.url, verify=tls(svc)) as http:
        me = http.get("/v1/session", headers={"authorization": f"Bearer {token}"})
        assert me.json() == {"client": "admin", "role": "administrator"}
        wrong = http.get("/v1/session", headers={"authorization": "Bearer not-a-token"})
        assert wrong.status_code == 401 and wrong.json()["code"] == "VMDR-E0351"


def test_every_asset_the_page_names_is_served(server: tuple[Service, str]) -> None:
    """No asset from elsewhere (nothing may download at run time), none missing."""
    import re

    svc, _ = server
    folder = Path(__file__).resolve().parents[3] / "src/vmdr/web/ui/static"
    with httpx.Client(base_url=svc.url, verify=tls(svc)) as http:
        names = re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', http.get("/ui/").text)
        for js in folder.glob("js/*.js"):
            text = js.read_text()
            assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
            assert "https://" not in text
            names += [f"/ui/static/js/{m[2:]}" for m in re.findall(r'from "(\./[^"]+)"', text)]
        assert len(names) > 5
        for name in set(names):
            assert http.get(name).status_code == 200, name
