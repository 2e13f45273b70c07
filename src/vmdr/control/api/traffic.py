"""REST API of the traffic manager (``control.traffic``).

    POST   /v1/traffic-profiles                       {name, dns_name, ttl, item?, enabled?}
    GET    /v1/traffic-profiles[/{profile}]           with endpoints, health, the record
                                                      published and the last events
    PATCH  /v1/traffic-profiles/{profile}             {enabled?, ttl?}
    DELETE /v1/traffic-profiles/{profile}
    POST   /v1/traffic-profiles/{profile}/endpoints   {name, site, address, priority,
                                                      enabled?, probe?}
    PATCH  /v1/traffic-profiles/{profile}/endpoints/{endpoint}   {enabled?, priority?}
    DELETE /v1/traffic-profiles/{profile}/endpoints/{endpoint}
    POST   /v1/traffic-profiles/{profile}/cutover     {site}: probe, then move the record

``profile`` is an id or a name. Addresses are IPv4 literals (the A record).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from vmdr.control.db.models import (
    Machine,
    ProtectedItem,
    RoutingEvent,
    TrafficEndpoint,
    TrafficProfile,
    by_id_or_name,
)
from vmdr.control.traffic import TrafficManager
from vmdr.model.errors import VmdrError

__all__ = ["add_traffic_routes"]

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_LABELS = rf"^{_LABEL}(\.{_LABEL}){{0,7}}$"  # a name inside the zone, e.g. www or shop.eu


class TrafficNotFound(VmdrError):
    code = "VMDR-E0906"
    http_status = 404
    msg = "no traffic {what} {name!r}"
    fix = "List them with `vmdr traffic list`."


class TrafficExists(VmdrError):
    code = "VMDR-E0907"
    http_status = 409
    msg = "a traffic {what} named {name!r} exists already"
    fix = "Choose another name, or delete the existing one first."


class Probe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    protocol: Literal["http", "https", "tcp"] = "http"
    port: int = Field(default=80, ge=1, le=65535)
    path: str = Field(default="/", pattern=r"^/[A-Za-z0-9._~/?=&%-]{0,255}$")
    expect: int = Field(default=200, ge=100, le=599)
    interval: float = Field(default=10.0, ge=0.5, le=3600)
    timeout: float = Field(default=5.0, ge=0.1, le=60)
    tolerated: int = Field(default=2, ge=0, le=100)
    ca: str | None = Field(default=None, max_length=1024)
    insecure: bool = False


class NewProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    dns_name: str = Field(pattern=DNS_LABELS, max_length=200, description="e.g. www")
    ttl: int = Field(default=30, ge=1, le=86400)
    item: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}$")
    enabled: bool = True


class ProfileChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None
    ttl: int | None = Field(default=None, ge=1, le=86400)


class NewEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    site: Literal["primary", "recovery"]
    address: str = Field(max_length=15)
    priority: int = Field(default=1, ge=1, le=1000)
    enabled: bool = True
    probe: Probe | None = None

    @field_validator("address")
    @classmethod
    def _ipv4(cls, value: str) -> str:
        return str(ipaddress.IPv4Address(value))


class EndpointChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None
    priority: int | None = Field(default=None, ge=1, le=1000)


class Cutover(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: Literal["primary", "recovery"]
    timeout: float = Field(default=120.0, ge=1, le=3600)


def _profile_dict(s: Any, p: TrafficProfile, events: int = 20) -> dict[str, Any]:
    recent = s.scalars(
        select(RoutingEvent)
        .where(RoutingEvent.profile_id == p.id)
        .order_by(RoutingEvent.id.desc())
        .limit(events)
    ).all()
    return {
        "id": p.id,
        "name": p.name,
        "dns_name": p.dns_name,
        "ttl": p.ttl,
        "routing": p.routing,
        "item": p.item_id,
        "enabled": p.enabled,
        "published": p.published,
        "endpoints": [
            {
                "name": e.name,
                "site": e.site,
                "address": e.address,
                "priority": e.priority,
                "enabled": e.enabled,
                "probe": e.probe,
                "healthy": e.healthy,
                "failures": e.failures,
                "probed_at": e.probed_at,
                "detail": e.detail,
            }
            for e in sorted(p.endpoints, key=lambda e: (e.priority, e.name))
        ],
        "events": [
            {"time": r.time, "kind": r.kind, "message": r.message} for r in reversed(recent)
        ],
    }


def add_traffic_routes(app: FastAPI, tm: TrafficManager) -> None:
    sessions = tm.sessions

    def find(s: Any, ident: str) -> TrafficProfile:
        p = by_id_or_name(s, TrafficProfile, ident)
        if p is None:
            raise TrafficNotFound(what="profile", name=ident)
        return p

    @app.post("/v1/traffic-profiles", status_code=201)
    def post_profile(body: NewProfile) -> dict[str, Any]:
        try:
            with sessions.begin() as s:
                item_id = None
                if body.item:
                    row = s.scalars(
                        select(ProtectedItem)
                        .join(Machine)
                        .where(or_(ProtectedItem.id == body.item, Machine.name == body.item))
                    ).first()
                    if row is None:
                        raise TrafficNotFound(what="protected item", name=body.item)
                    item_id = row.id
                p = TrafficProfile(
                    name=body.name,
                    dns_name=body.dns_name,
                    ttl=body.ttl,
                    routing="priority",
                    item_id=item_id,
                    enabled=body.enabled,
                )
                s.add(p)
                s.flush()
                return _profile_dict(s, p)
        except IntegrityError:
            raise TrafficExists(what="profile", name=body.name) from None

    @app.get("/v1/traffic-profiles")
    def get_profiles() -> list[dict[str, Any]]:
        with sessions() as s:
            rows = s.scalars(select(TrafficProfile).order_by(TrafficProfile.name)).all()
            return [_profile_dict(s, p, events=0) for p in rows]

    @app.get("/v1/traffic-profiles/{ident}")
    def get_profile(ident: str) -> dict[str, Any]:
        with sessions() as s:
            return _profile_dict(s, find(s, ident))

    @app.patch("/v1/traffic-profiles/{ident}")
    def patch_profile(ident: str, body: ProfileChange) -> dict[str, Any]:
        with sessions.begin() as s:
            p = find(s, ident)
            if body.enabled is not None and body.enabled != p.enabled:
                p.enabled = body.enabled
                if body.enabled:
                    p.published = None  # adopt the record as it is now
                tm.event(s, p, "profile", "enabled" if body.enabled else "disabled")
            if body.ttl is not None:
                p.ttl = body.ttl
            return _profile_dict(s, p)

    @app.delete("/v1/traffic-profiles/{ident}")
    def delete_profile(ident: str) -> dict[str, Any]:
        with sessions.begin() as s:
            p = find(s, ident)
            s.delete(p)
        return {"deleted": ident, "note": "the DNS record was left as it is"}

    @app.post("/v1/traffic-profiles/{ident}/endpoints", status_code=201)
    def post_endpoint(ident: str, body: NewEndpoint) -> dict[str, Any]:
        try:
            with sessions.begin() as s:
                p = find(s, ident)
                e = TrafficEndpoint(
                    name=body.name,
                    site=body.site,
                    address=body.address,
                    priority=body.priority,
                    enabled=body.enabled,
                    probe=body.probe.model_dump() if body.probe else None,
                )
                p.endpoints.append(e)
                s.flush()
                return _profile_dict(s, p)
        except IntegrityError:
            raise TrafficExists(what="endpoint", name=body.name) from None

    @app.patch("/v1/traffic-profiles/{ident}/endpoints/{name}")
    def patch_endpoint(ident: str, name: str, body: EndpointChange) -> dict[str, Any]:
        with sessions.begin() as s:
            p = find(s, ident)
            e = next((e for e in p.endpoints if e.name == name), None)
            if e is None:
                raise TrafficNotFound(what="endpoint", name=name)
            if body.enabled is not None:
                e.enabled = body.enabled
            if body.priority is not None:
                e.priority = body.priority
            return _profile_dict(s, p)

    @app.delete("/v1/traffic-profiles/{ident}/endpoints/{name}")
    def delete_endpoint(ident: str, name: str) -> dict[str, Any]:
        with sessions.begin() as s:
            p = find(s, ident)
            e = next((e for e in p.endpoints if e.name == name), None)
            if e is None:
                raise TrafficNotFound(what="endpoint", name=name)
            p.endpoints.remove(e)
            return _profile_dict(s, p)

    @app.post("/v1/traffic-profiles/{ident}/cutover")
    async def post_cutover(ident: str, body: Cutover) -> dict[str, Any]:
        with sessions() as s:
            profile_id = find(s, ident).id
        address = await run_in_threadpool(tm.cutover, profile_id, body.site, body.timeout)
        with sessions() as s:
            return {"address": address, **_profile_dict(s, find(s, profile_id))}
