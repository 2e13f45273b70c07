"""The configuration server's REST API (first part: sites, vCenters and
discovery, the inventory, jobs).

Served by ``vmdr serve configuration-server`` over HTTPS with token auth
(``transport.service``); on first start it writes an admin token to
``<state>/admin.token`` (mode 0600). OpenAPI is at ``/openapi.json``.

    POST /v1/sites                      {name, role}
    GET  /v1/sites
    POST /v1/vcenters                   {site, name, url, user, password, ca_pem, kind}
    GET  /v1/vcenters[/{id}]            never with the password
    PATCH /v1/vcenters/{id}             {url, user, password, ca_pem, kind}, any of them
    POST /v1/vcenters/{id}/discover     202 + the job's URL
    GET  /v1/hosts | /v1/datastores | /v1/machines[/{id}]
    POST /v1/prechecks/reprotect        every reprotect precheck, nothing changed
    GET  /v1/jobs[?item=&active=&limit=]  oldest first; limit keeps the newest
    GET  /v1/jobs/{id}                  a job with its events
    POST /v1/jobs/{id}/cancel
    GET  /v1/server/backup[?with_key=true]   a consistent archive (control.backup)
    POST /v1/server/restore             archive in; only onto a fresh server

Passwords are sealed (``control.secrets``) before they reach the database.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from vmdr.blocks.durable import write_atomically
from vmdr.control import roles_api
from vmdr.control.backup import BackupCorrupt, backup, restore
from vmdr.control.db.engine import open_database, session_factory
from vmdr.control.db.models import Datastore, Host, Job, JobEvent, Machine, Site, VCenter
from vmdr.control.groups import add_group_routes, group_kind
from vmdr.control.inventory import store_discovery
from vmdr.control.jobs import ACTIVE, JobKind, JobRunner, JobUnknown, StepContext
from vmdr.control.plans import add_plan_routes, plan_job_kind
from vmdr.control.reprotect_check import ReprotectCheck, run_reprotect_check
from vmdr.control.scripts import scripts_folder
from vmdr.control.secrets import SecretBox
from vmdr.control.traffic import TrafficManager
from vmdr.control.traffic_api import add_traffic_routes
from vmdr.control.workflows.context import Workflows
from vmdr.control.workflows.items import add_item_routes, job_accepted
from vmdr.control.workflows.plan import plan_kind
from vmdr.control.workflows.replicator import Replicator, replicate_kind
from vmdr.control.workflows.to_cloud import cloud_kinds
from vmdr.control.workflows.to_onprem import onprem_kinds
from vmdr.control.workflows.upkeep import upkeep_kinds
from vmdr.model.errors import VmdrError
from vmdr.transport.auth import TokenStore
from vmdr.transport.service import PublicPages, create_app

__all__ = ["ConfigServerSettings", "build_app"]

log = logging.getLogger(__name__)
NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}$"
MAX_BACKUP = 1 << 30


class NotFound(VmdrError):
    code = "VMDR-E0540"
    http_status = 404
    msg = "no {what} {id!r}"
    fix = "List them with GET /v1/{what}s."


class AlreadyExists(VmdrError):
    code = "VMDR-E0541"
    http_status = 409
    msg = "a {what} named {name!r} already exists"
    fix = "Choose another name, or use the existing one."


@dataclass
class ConfigServerSettings:
    state_dir: Path
    database_url: str | None = None  # default: SQLite in the state folder

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'vmdr.db'}"


class NewSite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    role: Literal["primary", "recovery"]


class NewVCenter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: str = Field(min_length=1, max_length=36)
    name: str = Field(pattern=NAME)
    kind: Literal["vcenter", "esx"] = "vcenter"
    url: str = Field(pattern=r"^https://[^\s/]+(/[^\s]*)?$", max_length=1024)
    user: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=1024, repr=False)
    ca_pem: str | None = Field(default=None, max_length=65536)


class VCenterChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, pattern=r"^https://[^\s/]+(/[^\s]*)?$", max_length=1024)
    user: str | None = Field(default=None, min_length=1, max_length=255)
    password: str | None = Field(default=None, min_length=1, max_length=1024, repr=False)
    ca_pem: str | None = Field(default=None, max_length=65536)
    kind: Literal["vcenter", "esx"] | None = None


def _vcenter(v: VCenter) -> dict[str, Any]:
    return {
        "id": v.id, "site": v.site_id, "name": v.name, "kind": v.kind, "url": v.url,
        "user": v.user, "discovered_at": v.discovered_at, "topology": v.topology,
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


def _job(j: Job, events: list[JobEvent] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": j.id, "kind": j.kind, "item": j.item_id, "state": j.state, "step": j.step,
        "error": j.error, "created_at": j.created_at, "updated_at": j.updated_at,
    }  # fmt: skip
    if events is not None:
        out["events"] = [
            {"time": e.time, "step": e.step, "kind": e.kind, "bytes": e.bytes,
             "message": e.message} for e in events
        ]  # fmt: skip
    return out


class ConfigServer:
    def __init__(self, settings: ConfigServerSettings) -> None:
        self.settings = settings
        self.engine = open_database(settings.url)
        self.sessions = session_factory(self.engine)
        self.secrets = SecretBox.in_folder(settings.state_dir)
        self.runner = JobRunner(self.sessions)
        self.runner.register(JobKind("discover", [("discover", self._discover_step)]))
        self.workflows = Workflows(
            self.sessions, self.runner, lambda: self.secrets, settings.state_dir
        )
        kinds = [*cloud_kinds(self.workflows), *onprem_kinds(self.workflows)]
        kinds += [*upkeep_kinds(self.workflows), plan_kind(self.workflows)]
        kinds.append(group_kind(self.workflows))
        for kind in (*kinds, replicate_kind(self.workflows), plan_job_kind(self.workflows)):
            self.runner.register(kind)

    def _discover_step(self, ctx: StepContext) -> None:
        from vmdr.providers.vsphere.discovery import discover
        from vmdr.providers.vsphere.errors import WrongEndpointKind

        with self.sessions() as s:
            vc = s.get(VCenter, ctx.params["vcenter"])
            if vc is None:
                raise NotFound(what="vcenter", id=ctx.params["vcenter"])
            kind, url = vc.kind, vc.url
        with self.workflows.vsphere(ctx.params["vcenter"]) as si:
            inventory = discover(si)
        actual = "esx" if inventory.api_type == "HostAgent" else "vcenter"
        if actual != kind:
            raise WrongEndpointKind(address=url, actual=actual, expected=kind)
        with self.sessions.begin() as s:
            vc = s.get(VCenter, ctx.params["vcenter"])
            assert vc is not None
            counts = store_discovery(s, vc, inventory)
        ctx.progress("discover", 0, f"found {counts}")

    def restore(self, archive: bytes) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "backup"
            path.write_bytes(archive)
            key = Path(tmp) / "secret.key"
            manifest = restore(self.engine, path, key_file=key)
            if key.exists():  # the archive's key replaces this fresh server's own
                assert self.secrets.path is not None
                write_atomically(self.secrets.path, key.read_bytes())
                self.secrets = SecretBox.in_folder(self.settings.state_dir)
        return manifest

    def get(self, model: Any, what: str, ident: str) -> Any:
        with self.sessions() as s:
            row = s.get(model, ident)
            if row is None:
                raise NotFound(what=what, id=ident)
            return row

    def add(self, row: Any, what: str, name: str) -> Any:
        try:
            with self.sessions.begin() as s:
                s.add(row)
        except IntegrityError:
            raise AlreadyExists(what=what, name=name) from None
        return row

    def list(self, model: Any) -> list[Any]:
        with self.sessions() as s:
            return list(s.scalars(select(model).order_by(model.name)))


def build_app(
    settings: ConfigServerSettings, tokens: TokenStore, pages: PublicPages | None = None
) -> FastAPI:
    """The configuration server's app; ``pages`` (the dashboard, added by
    ``vmdr serve``) share its port and its tokens."""
    registry = CollectorRegistry()
    app = create_app(
        "configuration-server",
        tokens,
        registry,
        open_paths=roles_api.OPEN | (pages.open_paths if pages else frozenset()),
        open_prefixes=pages.open_prefixes if pages else (),
    )
    if pages is not None:
        pages.add_to(app)
    cs = ConfigServer(settings)
    roles_api.add_role_routes(app, cs.sessions, tokens)
    add_item_routes(app, cs.workflows)
    traffic = TrafficManager(cs.sessions, lambda: cs.workflows.dataplane)
    cs.workflows.traffic = traffic
    add_traffic_routes(app, traffic)
    add_plan_routes(app, cs.workflows)
    add_group_routes(app, cs.workflows)
    scripts_folder(settings.state_dir)
    app.state.config_server = cs
    admin = settings.state_dir / "admin.token"
    if not admin.exists():
        write_atomically(admin, tokens.issue("admin").encode())
    threading.Thread(target=cs.runner.resume_all, name="resume-jobs", daemon=True).start()
    Replicator(cs.workflows).start()
    traffic.start()

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
        row = VCenter(
            site_id=body.site, name=body.name, kind=body.kind, url=body.url, user=body.user,
            secret_enc=cs.secrets.seal(body.password), ca_pem=body.ca_pem,
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
            if body.kind is not None:
                vc.kind = body.kind
            return _vcenter(vc)

    @app.post("/v1/vcenters/{ident}/discover", status_code=202)
    def post_discover(ident: str) -> JSONResponse:
        cs.get(VCenter, "vcenter", ident)
        return job_accepted(cs.runner.launch("discover", {"vcenter": ident}))

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

    @app.get("/v1/jobs")
    def get_jobs(
        item: str | None = Query(default=None, max_length=36),
        active: bool = False,
        limit: int | None = Query(default=None, ge=1, le=10000),
    ) -> list[dict[str, Any]]:
        """Jobs oldest first; ``item`` / ``active`` filter, ``limit`` keeps the newest."""
        query = select(Job)
        if item is not None:
            query = query.where(Job.item_id == item)
        if active:
            query = query.where(Job.state.in_(ACTIVE))
        with cs.sessions() as s:
            if limit is None:
                return [_job(j) for j in s.scalars(query.order_by(Job.created_at))]
            newest = s.scalars(query.order_by(Job.created_at.desc()).limit(limit))
            return [_job(j) for j in reversed(list(newest))]

    @app.get("/v1/jobs/{ident}")
    def get_job(ident: str) -> dict[str, Any]:
        with cs.sessions() as s:
            job = s.get(Job, ident)
            if job is None:
                raise JobUnknown(job=ident)
            events = list(
                s.scalars(select(JobEvent).where(JobEvent.job_id == ident).order_by(JobEvent.id))
            )
            kind = cs.runner.kinds.get(job.kind)
            return {**_job(job, events), "steps": [n for n, _ in kind.steps] if kind else []}

    @app.get("/v1/server/backup")
    def get_backup(with_key: bool = False) -> Response:
        """A consistent archive of the database (and the credentials key if asked)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "backup"
            backup(cs.engine, path, key_file=cs.secrets.path if with_key else None)
            data = path.read_bytes()
        log.info("backup taken (%d bytes, key included: %s)", len(data), with_key)
        return Response(data, media_type="application/gzip")

    @app.post("/v1/server/restore")
    async def post_restore(request: Request) -> dict[str, Any]:
        """Load an archive into this (fresh) server; all or nothing."""
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BACKUP:
                raise BackupCorrupt(path="upload", detail=f"larger than {MAX_BACKUP} bytes")
        manifest = await run_in_threadpool(cs.restore, bytes(body))
        roles_api.adopt_role_tokens(cs.sessions, tokens)
        threading.Thread(target=cs.runner.resume_all, daemon=True).start()
        return {"restored": True, "tables": manifest["tables"], "created": manifest["created"]}

    @app.post("/v1/jobs/{ident}/cancel", status_code=202)
    def post_cancel(ident: str) -> dict[str, Any]:
        cs.runner.cancel(ident)
        return {"job": ident, "cancel_requested": True}

    return app
