"""Sites, vCenters and ESX hosts, discovery and the inventory over HTTP.

    POST /v1/sites                      {name, role}
    GET  /v1/sites
    POST /v1/vcenters                   {site, name, url, user, password, kind,
                                         ca_pem | fingerprint | trust_on_first_use}
    GET  /v1/vcenters[/{id}]            never with the password
    PATCH /v1/vcenters/{id}             {url, user, password, ca_pem, fingerprint, kind}, any
    POST /v1/vcenters/{id}/discover     202 + the job's URL
    GET  /v1/hosts | /v1/datastores | /v1/machines[/{id}]
    POST /v1/prechecks/reprotect        every reprotect precheck, nothing changed

Passwords are sealed (``control.secrets``) before they reach the database.
A vCenter or ESX host is trusted by its CA (``ca_pem``), by a SHA-256
fingerprint the operator confirmed (``fingerprint``), by the system's CAs, or
— asked for in so many words — by the fingerprint it presents when added
(``trust_on_first_use``). One that none of these vouch for is refused when
added (VMDR-E0611, with the fingerprint to compare): TLS is never unchecked.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from vmdr.control.api.common import NAME, job_accepted
from vmdr.control.db.models import Datastore, Host, Machine, Site, VCenter
from vmdr.control.reprotect_check import ReprotectCheck, run_reprotect_check
from vmdr.control.server import ConfigServer, NotFound
from vmdr.providers.vsphere.session import normal_fingerprint, pin_for

log = logging.getLogger(__name__)


class NewSite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    role: Literal["primary", "recovery"]


# SHA-256, as 64 hex digits, with or without colons between the bytes.
FINGERPRINT = r"^(?:[0-9A-Fa-f]{64}|[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31})$"


class NewVCenter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: str = Field(min_length=1, max_length=36)
    name: str = Field(pattern=NAME)
    kind: Literal["vcenter", "esx"] = "vcenter"
    url: str = Field(pattern=r"^https://[^\s/]+(/[^\s]*)?$", max_length=1024)
    user: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=1024, repr=False)
    ca_pem: str | None = Field(default=None, max_length=65536)
    fingerprint: str | None = Field(default=None, pattern=FINGERPRINT)
    trust_on_first_use: bool = False


class VCenterChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, pattern=r"^https://[^\s/]+(/[^\s]*)?$", max_length=1024)
    user: str | None = Field(default=None, min_length=1, max_length=255)
    password: str | None = Field(default=None, min_length=1, max_length=1024, repr=False)
    ca_pem: str | None = Field(default=None, max_length=65536)
    fingerprint: str | None = Field(default=None, pattern=FINGERPRINT)
    kind: Literal["vcenter", "esx"] | None = None


def _vcenter(v: VCenter) -> dict[str, Any]:
    return {
        "id": v.id, "site": v.site_id, "name": v.name, "kind": v.kind, "url": v.url,
        "user": v.user, "discovered_at": v.discovered_at, "topology": v.topology,
        "trust": "ca" if v.ca_pem else ("fingerprint" if v.fingerprint else "system"),
        "fingerprint": v.fingerprint,
    }  # fmt: skip


def _machine(m: Machine) -> dict[str, Any]:
    return {
        "id": m.id, "name": m.name, "kind": m.kind, "vcenter": m.vcenter_id, "moref": m.moref,
        "host": m.host_id, "guest_os": m.guest_os, "enable_uuid": m.enable_uuid,
        "snapshots": m.snapshots, "vanished_at": m.vanished_at, "power_state": m.power_state,
        "guest_full_name": m.guest_full_name, "annotation": m.annotation,
        "datastores": m.datastores,
        "disks": [{"unit": d.unit, "uuid": d.uuid, "capacity": d.capacity, "path": d.path,
                   "datastore": d.datastore_id, "address": d.address,
                   "controller": d.controller, "backing": d.backing} for d in m.disks],
    }  # fmt: skip


def add_inventory_routes(app: FastAPI, cs: ConfigServer) -> None:
    @app.post("/v1/sites", status_code=201)
    def post_site(body: NewSite) -> dict[str, Any]:
        site = cs.add(Site(name=body.name, role=body.role), "site", body.name)
        return {"id": site.id, "name": site.name, "role": site.role}

    @app.get("/v1/sites")
    def get_sites() -> list[dict[str, Any]]:
        return [{"id": x.id, "name": x.name, "role": x.role} for x in cs.list(Site)]

    @app.post("/v1/vcenters", status_code=201)
    def post_vcenter(body: NewVCenter) -> dict[str, Any]:
        cs.get(Site, "site", body.site)
        fingerprint = normal_fingerprint(body.fingerprint) if body.fingerprint else None
        if body.ca_pem is None and fingerprint is None:
            fingerprint = pin_for(body.url, first_use=body.trust_on_first_use)
        row = VCenter(
            site_id=body.site, name=body.name, kind=body.kind, url=body.url, user=body.user,
            secret_enc=cs.secrets.seal(body.password), ca_pem=body.ca_pem,
            fingerprint=fingerprint,
        )  # fmt: skip
        return _vcenter(cs.add(row, "vcenter", body.name))

    @app.get("/v1/vcenters")
    def get_vcenters() -> list[dict[str, Any]]:
        return [_vcenter(v) for v in cs.list(VCenter)]

    @app.get("/v1/vcenters/{ident}")
    def get_vcenter(ident: str) -> dict[str, Any]:
        return _vcenter(cs.get(VCenter, "vcenter", ident))

    @app.patch("/v1/vcenters/{ident}")
    def patch_vcenter(ident: str, body: VCenterChange) -> dict[str, Any]:
        """New address, user, password, CA or kind of a known vCenter or ESX host."""
        with cs.sessions.begin() as s:
            vc = s.get(VCenter, ident)
            if vc is None:
                raise NotFound(what="vcenter", id=ident)
            if body.url is not None:
                vc.url = body.url
            if body.user is not None:
                vc.user = body.user
            if body.password is not None:
                vc.secret_enc = cs.secrets.seal(body.password)
            if body.ca_pem is not None:
                vc.ca_pem = body.ca_pem
            if body.fingerprint is not None:
                vc.fingerprint = normal_fingerprint(body.fingerprint)
            if body.kind is not None:
                vc.kind = body.kind
            return _vcenter(vc)

    @app.post("/v1/vcenters/{ident}/discover", status_code=202)
    def post_discover(ident: str) -> JSONResponse:
        cs.get(VCenter, "vcenter", ident)
        return job_accepted(cs.jobs.submit("discover", {"vcenter": ident}))

    @app.get("/v1/hosts")
    def get_hosts() -> list[dict[str, Any]]:
        return [{"id": h.id, "name": h.name, "vcenter": h.vcenter_id, "cluster": h.cluster}
                for h in cs.list(Host)]  # fmt: skip

    @app.get("/v1/datastores")
    def get_datastores() -> list[dict[str, Any]]:
        return [{"id": d.id, "name": d.name, "vcenter": d.vcenter_id, "type": d.type,
                 "hosts": d.host_ids, "rdm_supported": d.rdm_supported}
                for d in cs.list(Datastore)]  # fmt: skip

    @app.get("/v1/machines")
    def get_machines() -> list[dict[str, Any]]:
        with cs.sessions() as s:
            return [_machine(m) for m in s.scalars(select(Machine).order_by(Machine.name))]

    @app.get("/v1/machines/{ident}")
    def get_machine(ident: str) -> dict[str, Any]:
        with cs.sessions() as s:
            m = s.get(Machine, ident)
            if m is None:
                raise NotFound(what="machine", id=ident)
            return _machine(m)

    @app.post("/v1/prechecks/reprotect")
    def post_reprotect_check(body: ReprotectCheck) -> dict[str, Any]:
        """Every reprotect precheck for one machine, nothing changed."""
        with cs.sessions() as s:
            report = run_reprotect_check(s, body, server_id="this")
        out = report.to_dict()
        if report.matching is not None:
            out["disks"] = [
                {"cloud": m.cloud.name, "original": m.original.file if m.original else None,
                 "method": m.method, "confidence": m.confidence, "note": m.note}
                for m in report.matching.matches
            ]  # fmt: skip
        return out
