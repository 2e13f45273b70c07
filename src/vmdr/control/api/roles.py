"""Process servers and master targets registered with the configuration server.

    POST /v1/roles/register   {kind, name, url, passphrase[, vm]}: the
                              configuration server's one-time passphrase buys
                              the role a token (shown once; only its digest is
                              kept); a master target names the on-premises VM
                              it runs in (``vm``), whose settings discovery reads
    POST /v1/roles/heartbeat  {health}: with the role's own token
    GET  /v1/process-servers | /v1/master-targets   with "healthy": a heartbeat
                              in the last ``STALE_SECONDS``; a master target
                              with its VM's settings (``vm``): host,
                              enable_uuid, snapshots, disks, datastores now and
                              at registration, ``storage_vmotioned``

A role's token names it (``process-server.NAME`` / ``master-target.NAME``), so
a heartbeat can only speak for the role that sent it, and it reaches only the
roles' own routes (``authorize``): never backups, credentials, vCenters,
items or operations — a stolen process-server token cannot start a failover.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from typing import Any, Literal

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from vmdr.control.access import RoleTooLow, may_call_as, required_role
from vmdr.control.db.models import Machine, MasterTarget, ProcessServer
from vmdr.control.nodes import is_healthy, last_beat
from vmdr.control.workflows.metrics import record_heartbeat
from vmdr.model.errors import VmdrError
from vmdr.model.facts import storage_vmotioned
from vmdr.transport.auth import Forbidden, Principal, TokenStore

__all__ = ["OPEN", "ROLE_ROUTES", "add_role_routes", "adopt_role_tokens", "authorize"]

OPEN = frozenset({"/v1/roles/register"})
log = logging.getLogger(__name__)
MODELS: dict[str, Any] = {"process-server": ProcessServer, "master-target": MasterTarget}


# What a process server's or master target's token may call here.
ROLE_ROUTES = frozenset({("POST", "/v1/roles/heartbeat")})


def authorize(principal: Principal, method: str, route: str) -> None:
    """A role's token reaches only ``ROLE_ROUTES`` (``Forbidden``); a
    person's, or the admin token's, what its role allows (``access``)."""
    if principal.name.partition(".")[0] in MODELS:
        if (method, route) not in ROLE_ROUTES:
            raise Forbidden(client=principal.name, method=method, path=route)
        return
    if not may_call_as(principal, method, route):
        raise RoleTooLow(principal=principal.name, role=principal.role, method=method,
                         path=route, needed=required_role(method, route).label)  # fmt: skip


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
    vm: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}$")


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    health: dict[str, Any] = Field(default_factory=dict)


def _role(row: Any, now: dt.datetime) -> dict[str, Any]:
    beat, healthy = last_beat(row), is_healthy(row, now)
    return {
        "id": row.id, "name": row.name, "url": row.url, "registered_at": row.registered_at,
        "heartbeat_at": beat, "healthy": healthy, "health": row.health,
    }  # fmt: skip


def add_role_routes(
    app: FastAPI, sessions: Any, tokens: TokenStore, grant_key: Callable[[], str]
) -> None:
    """``grant_key``: the public key of the server's grants (``transport.grants``),
    given to each role at registration for its ``--grant-key``."""

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
            if body.kind == "master-target" and body.vm != getattr(row, "vm_name", None):
                row.vm_name, row.machine_id = body.vm, None
                row.vm_datastores_at_registration = None  # set by the next discovery
            s.flush()
            ident = row.id
        return {"id": ident, "kind": body.kind, "name": body.name, "token": token,
                "grant_key": grant_key()}  # fmt: skip

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
            now, then, before = dt.datetime.now(dt.UTC), last_beat(row), row.health or {}
            row.heartbeat_at, row.health = now, body.health
            if kind == "process-server" and then is not None:
                try:
                    record_heartbeat(s, before, body.health, (now - then).total_seconds())
                except (TypeError, ValueError, KeyError, AttributeError) as exc:
                    # A malformed report costs its samples, never the heartbeat.
                    log.warning("heartbeat of %s: no samples (%s)", client, exc)
        return {"ok": True}

    for kind, model in MODELS.items():
        app.add_api_route(f"/v1/{kind}s", _lister(sessions, model), methods=["GET"])


def adopt_role_tokens(sessions: Any, tokens: TokenStore) -> int:
    """After a restore: trust the registered roles' tokens again."""
    count = 0
    with sessions() as s:
        for kind, model in MODELS.items():
            for row in s.scalars(select(model)):
                tokens.adopt(f"{kind}.{row.name}", row.token_digest)
                count += 1
    return count


def _vm_settings(s: Any, mt: MasterTarget) -> dict[str, Any] | None:
    """The master target's own VM as discovery last saw it (the seeds' rules
    on it are checked by reprotect's prechecks)."""
    if mt.vm_name is None:
        return None
    machine = s.get(Machine, mt.machine_id) if mt.machine_id else None
    if machine is None:
        return {"name": mt.vm_name, "discovered": False}
    then = mt.vm_datastores_at_registration
    return {
        "name": mt.vm_name, "discovered": True, "machine": machine.id, "host": machine.host_id,
        "enable_uuid": machine.enable_uuid, "snapshots": machine.snapshots,
        "disks": len(machine.disks), "datastores": machine.datastores,
        "datastores_at_registration": then,
        "storage_vmotioned": storage_vmotioned(then, machine.datastores),
    }  # fmt: skip


def _lister(sessions: Any, model: Any) -> Any:
    def handler() -> list[dict[str, Any]]:
        now = dt.datetime.now(dt.UTC)
        with sessions() as s:
            rows = s.scalars(select(model).order_by(model.name))
            if model is not MasterTarget:
                return [_role(r, now) for r in rows]
            return [{**_role(r, now), "vm": _vm_settings(s, r)} for r in rows]

    return handler
