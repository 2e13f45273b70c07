"""Process servers and master targets registered with the configuration server.

    POST /v1/roles/register   {kind, name, url, passphrase}: the configuration
                              server's one-time passphrase buys the role a token
                              (shown once; only its digest is kept)
    POST /v1/roles/heartbeat  {health}: with the role's own token
    GET  /v1/process-servers | /v1/master-targets   with "healthy": a heartbeat
                              in the last ``STALE_SECONDS``

A role's token names it (``process-server.NAME`` / ``master-target.NAME``), so
a heartbeat can only speak for the role that sent it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Literal

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from vmdr.control.db.models import MasterTarget, ProcessServer
from vmdr.model.errors import VmdrError
from vmdr.transport.auth import TokenStore

__all__ = ["OPEN", "STALE_SECONDS", "add_role_routes"]

OPEN = frozenset({"/v1/roles/register"})
STALE_SECONDS = 90.0
MODELS: dict[str, Any] = {"process-server": ProcessServer, "master-target": MasterTarget}


class NotARole(VmdrError):
    code = "VMDR-E0542"
    http_status = 403
    msg = "client {client!r} is not a registered process server or master target"
    fix = "Heartbeats come from roles, with the token they got at registration."


class RoleRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["process-server", "master-target"]
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$")
    url: str = Field(pattern=r"^https://[^\s/]+$", max_length=1024)
    passphrase: str = Field(min_length=1, max_length=256)


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    health: dict[str, Any] = Field(default_factory=dict)


def _role(row: Any, now: dt.datetime) -> dict[str, Any]:
    beat = row.heartbeat_at
    if beat is not None and beat.tzinfo is None:  # SQLite returns naive UTC
        beat = beat.replace(tzinfo=dt.UTC)
    healthy = beat is not None and (now - beat).total_seconds() < STALE_SECONDS
    return {
        "id": row.id, "name": row.name, "url": row.url, "registered_at": row.registered_at,
        "heartbeat_at": beat, "healthy": healthy, "health": row.health,
    }  # fmt: skip


def add_role_routes(app: FastAPI, sessions: Any, tokens: TokenStore) -> None:
    @app.post("/v1/roles/register", status_code=201)
    def register(body: RoleRegistration) -> dict[str, Any]:
        client = f"{body.kind}.{body.name}"
        token = tokens.register(client, body.passphrase)
        model = MODELS[body.kind]
        digest = hashlib.sha256(token.encode()).hexdigest()
        with sessions.begin() as s:
            row = s.scalars(select(model).where(model.name == body.name)).first()
            if row is None:
                row = model(name=body.name, url=body.url, token_digest=digest)
                s.add(row)
            row.url, row.token_digest = body.url, digest
            s.flush()
            ident = row.id
        return {"id": ident, "kind": body.kind, "name": body.name, "token": token}

    @app.post("/v1/roles/heartbeat")
    def heartbeat(body: Heartbeat, request: Request) -> dict[str, Any]:
        client = str(getattr(request.state, "client_name", ""))
        kind, _, name = client.partition(".")
        if kind not in MODELS or not name:
            raise NotARole(client=client)
        model = MODELS[kind]
        with sessions.begin() as s:
            row = s.scalars(select(model).where(model.name == name)).first()
            if row is None:
                raise NotARole(client=client)
            row.heartbeat_at = dt.datetime.now(dt.UTC)
            row.health = body.health
        return {"ok": True}

    for kind, model in MODELS.items():
        app.add_api_route(f"/v1/{kind}s", _lister(sessions, model), methods=["GET"])


def _lister(sessions: Any, model: Any) -> Any:
    def handler() -> list[dict[str, Any]]:
        now = dt.datetime.now(dt.UTC)
        with sessions() as s:
            return [_role(r, now) for r in s.scalars(select(model).order_by(model.name))]

    return handler
