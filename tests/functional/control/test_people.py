"""People on a running configuration server: users with roles log in and
get expiring session tokens; each route refuses the roles below its own
(walked over the whole OpenAPI document); every state-changing request is
in the audit log, with who made it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from vmdr.control.access import Role, required_role
from vmdr.control.db.engine import open_database, session_factory
from vmdr.control.db.models import UserSession
from vmdr.lab.pair import Service
from vmdr.transport.client import RemoteError, ServiceClient

OPEN = {("POST", "/v1/roles/register"), ("POST", "/v1/register"), ("GET", "/healthz"),
        ("POST", "/v1/login")}  # fmt: skip


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Service, ServiceClient]]:
    svc = Service("configuration-server", [], tmp_path / "cs", tmp_path / "pki")
    svc.start()
    with svc.client((tmp_path / "cs" / "admin.token").read_text()) as admin:
        yield svc, admin
    svc.stop()


def login(svc: Service, user: str, password: str) -> str:
    with ServiceClient("cs", svc.url, svc.ca_file) as anon:
        answer = anon.post("/v1/login", {"user": user, "password": password})
    return str(answer["token"])


def test_each_role_reaches_what_it_may_and_no_more(server: tuple[Service, ServiceClient]) -> None:
    svc, admin = server
    for name, role in (("vera", "viewer"), ("otto", "operator")):
        admin.post("/v1/users", {"name": name, "role": role, "password": f"{name}-long-password"})
    document = admin.get("/openapi.json")
    for name, role in (("vera", Role.VIEWER), ("otto", Role.OPERATOR)):
        token = login(svc, name, f"{name}-long-password")
        refused = allowed = 0
        with ServiceClient("cs", svc.url, svc.ca_file, token) as person:
            for path, methods in document["paths"].items():
                for method in (m.upper() for m in methods):
                    if (method, path) in OPEN or path == "/v1/logout":
                        continue
                    concrete = re.sub(r"\{[^}]+\}", "x1", path)
                    try:
                        person.request(method, concrete)
                        status, code = 200, None
                    except RemoteError as exc:
                        status, code = exc.status, exc.remote_code
                    except ValueError:  # answered, but not JSON (the metrics, the docs page)
                        status, code = 200, None
                    if required_role(method, path) > role:
                        assert (status, code) == (403, "VMDR-E0359"), (name, method, path)
                        refused += 1
                    else:
                        assert code != "VMDR-E0359" and status != 401, (name, method, path)
                        allowed += 1
            assert person.post("/v1/logout") == {"ended": True}  # any role ends its own session
            with pytest.raises(RemoteError) as err:
                person.get("/v1/sites")
            assert err.value.status == 401
        assert refused and allowed, (name, refused, allowed)
    # The viewer reads; the operator may not touch credentials or backups.
    with ServiceClient("cs", svc.url, svc.ca_file, login(svc, "otto", "otto-long-password")) as o:
        with pytest.raises(RemoteError) as err:
            o.get("/v1/server/backup")
        assert err.value.remote_code == "VMDR-E0359" and "administrator" in err.value.message


def test_login_sessions_expire_and_end(server: tuple[Service, ServiceClient]) -> None:
    svc, admin = server
    admin.post("/v1/users", {"name": "ada", "role": "administrator",
                             "password": "ada-long-password"})  # fmt: skip
    with pytest.raises(RemoteError) as err:
        login(svc, "ada", "wrong-password")
    assert (err.value.status, err.value.remote_code) == (401, "VMDR-E0358")
    with pytest.raises(RemoteError) as err:
        login(svc, "nobody", "wrong-password")
    assert err.value.remote_code == "VMDR-E0358"  # the same answer: names are not revealed
    token = login(svc, "ada", "ada-long-password")
    with ServiceClient("cs", svc.url, svc.ca_file, token) as ada:
        assert [u["name"] for u in ada.get("/v1/users")] == ["ada"]
    engine = open_database(f"sqlite:///{svc.state / 'vmdr.db'}")
    try:
        with session_factory(engine).begin() as s:  # twelve hours later
            s.execute(update(UserSession).values(expires_at=UserSession.created_at))
    finally:
        engine.dispose()
    with ServiceClient("cs", svc.url, svc.ca_file, token) as ada:
        with pytest.raises(RemoteError) as err:
            ada.get("/v1/users")
        assert (err.value.status, err.value.remote_code) == (401, "VMDR-E0351")
    token = login(svc, "ada", "ada-long-password")
    with ServiceClient("cs", svc.url, svc.ca_file, token) as ada:
        assert ada.post("/v1/logout") == {"ended": True}
        with pytest.raises(RemoteError) as err:
            ada.get("/v1/users")
        assert err.value.status == 401
    # A new password ends every session of the user.
    token = login(svc, "ada", "ada-long-password")
    admin.request("PATCH", "/v1/users/ada", json={"password": "another-long-password"})
    with ServiceClient("cs", svc.url, svc.ca_file, token) as ada:
        with pytest.raises(RemoteError) as err:
            ada.get("/v1/users")
        assert err.value.status == 401


def test_every_state_change_is_audited_with_who_made_it(
    server: tuple[Service, ServiceClient],
) -> None:
    svc, admin = server
    admin.post("/v1/users", {"name": "otto", "role": "operator", "password": "otto-long-password"})
    token = login(svc, "otto", "otto-long-password")
    with ServiceClient("cs", svc.url, svc.ca_file, token) as otto:
        with pytest.raises(RemoteError):
            otto.post("/v1/sites", {"name": "on-premises", "role": "primary"})  # refused
        with pytest.raises(RemoteError):
            otto.post("/v1/protected-items", {"vm": "web-01"})  # allowed, but malformed
    with pytest.raises(RemoteError):
        login(svc, "otto", "not-the-password")
    admin.get("/v1/sites")  # a read: not audited
    lines = [(e["principal"], e["method"], e["path"], e["status"])
             for e in admin.get("/v1/audit")]  # fmt: skip
    assert lines == [
        ("admin", "POST", "/v1/users", 201),
        ("user:otto", "POST", "/v1/login", 200),
        ("user:otto", "POST", "/v1/sites", 403),
        ("user:otto", "POST", "/v1/protected-items", 422),
        ("user:otto", "POST", "/v1/login", 401),
    ]
    assert "otto-long-password" not in str(admin.get("/v1/audit"))
    first = admin.get("/v1/audit")[0]["id"]
    assert len(admin.get(f"/v1/audit?after={first}")) == 4


def test_the_cli_adds_a_user_who_logs_in_and_is_audited(
    server: tuple[Service, ServiceClient], tmp_path: Path
) -> None:
    """`vmdr users add`, `vmdr login --user`, then commands as that user:
    a viewer lists, is refused a change with the code, and the audit shows it."""
    import json
    import os
    import subprocess
    import sys

    svc, _ = server
    base = {k: v for k, v in os.environ.items() if not k.startswith("VMDR_")}

    def vmdr(*args: str, **env: str) -> tuple[int, object]:
        env = {**base, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), **env}
        done = subprocess.run([sys.executable, "-m", "vmdr", *args, "--json"],
                              capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
        return done.returncode, json.loads(done.stdout) if done.stdout.strip() else done.stderr

    as_admin = {"VMDR_SERVER": svc.url, "VMDR_CA": str(svc.ca_file),
                "VMDR_TOKEN_FILE": str(svc.state / "admin.token")}  # fmt: skip
    code, out = vmdr("users", "add", "vera", "--role", "viewer",
                     VMDR_PASSWORD="vera-long-password", **as_admin)  # fmt: skip
    assert code == 0 and out == [
        {"name": "vera", "role": "viewer", "created_at": out[0]["created_at"]}
    ]  # type: ignore[index]
    code, out = vmdr("login", "--server", svc.url, "--ca", str(svc.ca_file), "--user", "vera",
                     VMDR_PASSWORD="vera-long-password")  # fmt: skip
    assert code == 0 and out["expires_at"], out  # type: ignore[index]
    code, out = vmdr("sites", "list")
    assert code == 0 and out == []
    code, out = vmdr("users", "list")
    assert code == 1 and out["error"]["code"] == "VMDR-E0359", out  # type: ignore[index]
    code, out = vmdr("audit", **as_admin)
    assert code == 0
    assert [(e["principal"], e["path"]) for e in out] == [  # type: ignore[attr-defined]
        ("admin", "/v1/users"), ("user:vera", "/v1/login")]  # fmt: skip
