"""Roles and passwords (``control/access.py``): pure logic."""

from __future__ import annotations

import pytest

from vmdr.control.access import Role, hash_password, required_role, verify_password


@pytest.mark.parametrize(
    ("method", "route", "role"),
    [
        ("GET", "/v1/protected-items", Role.VIEWER),
        ("GET", "/v1/jobs/{job_id}/events", Role.VIEWER),
        ("POST", "/v1/protected-items/{ident}/failover", Role.OPERATOR),
        ("POST", "/v1/plans/{name}/run", Role.OPERATOR),
        ("DELETE", "/v1/plans/{name}", Role.OPERATOR),
        ("GET", "/v1/server/backup", Role.ADMINISTRATOR),
        ("GET", "/v1/server/backup-key", Role.ADMINISTRATOR),
        ("POST", "/v1/server/restore", Role.ADMINISTRATOR),
        ("POST", "/v1/vcenters", Role.ADMINISTRATOR),
        ("PATCH", "/v1/vcenters/{ident}", Role.ADMINISTRATOR),
        ("GET", "/v1/vcenters", Role.VIEWER),  # never with the password
        ("POST", "/v1/vcenters/{ident}/discover", Role.OPERATOR),
        ("POST", "/v1/sites", Role.ADMINISTRATOR),
        ("GET", "/v1/users", Role.ADMINISTRATOR),
        ("DELETE", "/v1/users/{name}", Role.ADMINISTRATOR),
        ("GET", "/v1/audit", Role.ADMINISTRATOR),
        ("GET", "/metrics", Role.VIEWER),  # counters, for a monitoring system's viewer token
        ("POST", "/v1/logout", Role.VIEWER),
        ("OPTIONS", "/v1/protected-items", Role.ADMINISTRATOR),
    ],
)
def test_every_route_has_a_least_role(method: str, route: str, role: Role) -> None:
    assert required_role(method, route) is role


def test_roles_are_ordered() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.ADMINISTRATOR
    assert Role.named("operator") is Role.OPERATOR and Role.OPERATOR.label == "operator"


def test_passwords_are_salted_scrypt_and_checked() -> None:
    one, two = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert one != two and one.startswith("scrypt$16384$8$1$")  # a salt each
    assert verify_password("correct horse battery", one)
    assert not verify_password("correct horse batterY", one)
    assert not verify_password("x", "md5$abc") and not verify_password("x", "garbage")
