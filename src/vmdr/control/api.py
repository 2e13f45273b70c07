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
    /v1/jobs…                           jobs: list, one, events, cancel, retry (jobs_api.py)
    GET  /v1/server/backup[?with_key=true]   a consistent archive (control.backup)
    POST /v1/server/restore             archive in; only onto a fresh server

Passwords are sealed (``control.secrets``) before they reach the database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from starlette.concurrency import run_in_threadpool

from vmdr.blocks.durable import write_atomically
from vmdr.control import roles_api
from vmdr.control.backup import BackupCorrupt, backup, restore
from vmdr.control.db.engine import open_database, session_factory
from vmdr.control.db.models import Datastore, Host, Machine, Site, VCenter
from vmdr.control.groups import add_group_routes, group_kind
from vmdr.control.inventory import store_discovery
from vmdr.control.jobs import JobKind, StepContext
from vmdr.control.jobs.engine import Engine, QueueLimits
from vmdr.control.jobs.workers import WorkerLease, worker_id
from vmdr.control.jobs_api import add_job_routes
from vmdr.control.overview import add_overview_routes
from vmdr.control.plans import add_plan_routes, plan_job_kind
from vmdr.control.reprotect_check import ReprotectCheck, run_reprotect_check
from vmdr.control.scripts import scripts_folder
from vmdr.control.secrets import SecretBox
from vmdr.control.traffic import TrafficManager
from vmdr.control.traffic_api import add_traffic_routes
from vmdr.control.workflows.context import Workflows
from vmdr.control.workflows.items import add_item_routes, job_accepted
from vmdr.control.workflows.plan import plan_kind
from vmdr.control.workflows.replicator import DEFAULT_TICK, replicate_kind, schedule_due
from vmdr.control.workflows.to_cloud import cloud_kinds
from vmdr.control.workflows.to_onprem import onprem_kinds
from vmdr.control.workflows.upkeep import upkeep_kinds
from vmdr.model.errors import VmdrError
from vmdr.transport.auth import TokenStore
from vmdr.transport.service import PublicPages, create_app, problem

__all__ = ["ConfigServerSettings", "build_app"]

log = logging.getLogger(__name__)
NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}$"
MAX_BACKUP = 1 << 30
# Seconds a clean stop gives running steps (the lab stops with SIGKILL after 10).
STOP_WAIT = 5.0


class NotFound(VmdrError):
    code = "VMDR-E0540"
    http_status = 404
    msg = "no {what} {id!r}"
    fix = "List them with GET /v1/{what}s."


class ChangedMeanwhile(VmdrError):
    code = "VMDR-E0518"
    http_status = 409
    msg = "{what} was changed by another request while this one ran"
    fix = "Read it again and retry if the change still applies."


class AlreadyExists(VmdrError):
    code = "VMDR-E0541"
    http_status = 409
    msg = "a {what} named {name!r} already exists"
    fix = "Choose another name, or use the existing one."


@dataclass
class ConfigServerSettings:
    state_dir: Path
    database_url: str | None = None  # default: SQLite in the state folder
    # Run jobs in this process too (always with SQLite, whose file one
    # process owns); off for API replicas beside ``vmdr serve worker``s.
    worker: bool = True
    limits: QueueLimits = field(default_factory=QueueLimits)
    scheduler_tick: float = DEFAULT_TICK
    # Finished jobs (with their events) are kept this many days.
    job_retention_days: float = 30.0

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


def job_kinds(wf: Workflows) -> list[JobKind]:
    """Every job kind of the configuration server's workflows."""
    kinds = [*cloud_kinds(wf), *onprem_kinds(wf), *upkeep_kinds(wf), plan_kind(wf)]
    return [*kinds, group_kind(wf), replicate_kind(wf), plan_job_kind(wf)]


class ConfigServer:
    def __init__(self, settings: ConfigServerSettings) -> None:
        self.settings = settings
        self.engine = open_database(settings.url)
        self.sessions = session_factory(self.engine)
        self.secrets = SecretBox.in_folder(settings.state_dir)
        self.jobs = Engine(self.sessions, settings.url)
        self.jobs.register(JobKind("discover", [("discover", self._discover_step)]))
        self.workflows = Workflows(
            self.sessions, self.jobs, lambda: self.secrets, settings.state_dir
        )
        for kind in job_kinds(self.workflows):
            self.jobs.register(kind)
        self.jobs.every(
            "replication", settings.scheduler_tick, lambda: schedule_due(self.workflows)
        )
        self.jobs.every("retention", 3600, self.prune)
        self.jobs.every("reconcile", 60, self.jobs.reconcile)
        self.lease: WorkerLease | None = None
        # Cutover steps move DNS; the probe loop starts only with the API.
        self.traffic = TrafficManager(self.sessions, lambda: self.workflows.dataplane)
        self.workflows.traffic = self.traffic

    def start_worker(self) -> None:
        """Run jobs in this process: a lease, then the engine's executor."""
        ident = worker_id(self.settings.state_dir)
        self.lease = WorkerLease(self.sessions, ident)
        self.lease.start()
        self.jobs.launch_worker(ident, self.settings.limits)

    def stop_worker(self, wait: float = 30.0) -> None:
        """A clean stop: running steps get ``wait`` seconds to end; then the
        lease ends at once, and another worker takes over what is left (the
        caller exits right after, so no step runs twice)."""
        self.jobs.shutdown(wait)
        if self.lease is not None:
            self.lease.close()

    def prune(self) -> int:
        """Finished jobs older than the retention go (the scheduler's ticks
        after an hour)."""
        now = dt.datetime.now(dt.UTC)
        keep = dt.timedelta(days=self.settings.job_retention_days)
        return self.jobs.prune(now - keep, now - dt.timedelta(hours=1))

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

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        # A clean stop ends this worker's lease at once, so that a restart
        # (or another worker) resumes what is left without waiting it out.
        cs.traffic.stop.set()
        await run_in_threadpool(cs.stop_worker, STOP_WAIT)

    app = create_app(
        "configuration-server",
        tokens,
        registry,
        open_paths=roles_api.OPEN | (pages.open_paths if pages else frozenset()),
        open_prefixes=pages.open_prefixes if pages else (),
        lifespan=lifespan,
    )
    if pages is not None:
        pages.add_to(app)

    @app.exception_handler(StaleDataError)
    async def changed_meanwhile(request: Request, exc: StaleDataError) -> JSONResponse:
        # Two requests (or a request and a job) changed the same row: the
        # second is refused whole, nothing of it is written.
        return problem(ChangedMeanwhile(what=request.url.path))

    cs = ConfigServer(settings)
    roles_api.add_role_routes(app, cs.sessions, tokens)
    add_item_routes(app, cs.workflows)
    traffic = cs.traffic
    add_traffic_routes(app, traffic)
    add_plan_routes(app, cs.workflows)
    add_job_routes(app, cs.workflows)
    add_overview_routes(app, cs.workflows)
    add_group_routes(app, cs.workflows)
    scripts_folder(settings.state_dir)
    app.state.config_server = cs
    admin = settings.state_dir / "admin.token"
    if not admin.exists():
        write_atomically(admin, tokens.issue("admin").encode())
    if settings.worker or cs.engine.dialect.name == "sqlite":
        cs.start_worker()
    else:
        cs.jobs.prepare_schema()  # the engine's tables, for submitting jobs
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
        await run_in_threadpool(cs.jobs.reconcile)
        return {"restored": True, "tables": manifest["tables"], "created": manifest["created"]}

    return app
