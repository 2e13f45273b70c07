"""``vmdr users`` and ``vmdr audit``: people and what they did (an
administrator's commands; ``control/access.py`` says who may do what)."""

from __future__ import annotations

import os
from typing import Any

import typer

from vmdr.cli.remote import JsonOption, call, show

ROLES = "viewer, operator or administrator"


def _password(name: str) -> str:
    given = os.environ.get("VMDR_PASSWORD")
    if given:
        return given
    prompt = f"new password for {name} (12 characters or more)"
    return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=True))


def add_commands(app: typer.Typer) -> None:
    users = typer.Typer(help="People who use vmdr, and their roles.")

    @users.command("list")
    def list_users(as_json: bool = JsonOption) -> None:
        """The users and their roles."""
        show(call("GET", "/v1/users", as_json), ["name", "role", "created_at"], "users", as_json)

    @users.command("add")
    def add_user(
        name: str,
        role: str = typer.Option(..., help=ROLES),
        as_json: bool = JsonOption,
    ) -> None:
        """Add a user (password from VMDR_PASSWORD, else asked twice)."""
        body = {"name": name, "role": role, "password": _password(name)}
        show([call("POST", "/v1/users", as_json, body)], ["name", "role"], "user", as_json)

    @users.command("set-role")
    def set_role(name: str, role: str, as_json: bool = JsonOption) -> None:
        """Give a user another role."""
        answer = call("PATCH", f"/v1/users/{name}", as_json, {"role": role})
        show([answer], ["name", "role"], "user", as_json)

    @users.command("passwd")
    def passwd(name: str, as_json: bool = JsonOption) -> None:
        """Set a user's password; their sessions end."""
        answer = call("PATCH", f"/v1/users/{name}", as_json, {"password": _password(name)})
        show([answer], ["name", "role"], "user", as_json)

    @users.command("remove")
    def remove(name: str, as_json: bool = JsonOption) -> None:
        """Remove a user and end their sessions."""
        show([call("DELETE", f"/v1/users/{name}", as_json)], ["name", "deleted"], "user", as_json)

    app.add_typer(users, name="users")

    @app.command("audit")
    def audit(
        after: int = typer.Option(0, help="Only entries after this id."),
        limit: int = typer.Option(100, help="At most this many (1000)."),
        as_json: bool = JsonOption,
    ) -> None:
        """State-changing requests: who, what, when, and the answer."""
        rows: list[dict[str, Any]] = call("GET", f"/v1/audit?after={after}&limit={limit}", as_json)
        show(rows, ["id", "at", "principal", "method", "path", "status"], "audit", as_json)
