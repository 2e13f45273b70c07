"""The configuration server: its database, credentials key, job engine with
every job kind, worker lease and traffic manager, as one object that the
HTTP API (``control/api``) and ``vmdr serve worker`` share."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from vmdr.blocks.durable import write_atomically
from vmdr.control.backup import KEY_FILE as BACKUP_KEY_FILE
from vmdr.control.backup import backup_key_in, restore
from vmdr.control.db.engine import open_database, session_factory
from vmdr.control.db.models import VCenter
from vmdr.control.inventory import store_discovery
from vmdr.control.jobs import JobKind, StepContext
from vmdr.control.jobs.engine import Engine, QueueLimits
from vmdr.control.jobs.params import DiscoverParams
from vmdr.control.jobs.workers import WorkerLease, worker_id
from vmdr.control.secrets import SecretBox
from vmdr.control.traffic import TrafficManager
from vmdr.control.workflows.attachments import (
    RECONCILE_SECONDS,
    reconcile_attachments,
    release_kind,
)
from vmdr.control.workflows.context import Workflows
from vmdr.control.workflows.groups import group_kind
from vmdr.control.workflows.plans import plan_job_kind
from vmdr.control.workflows.replicator import DEFAULT_TICK, replicate_kind, schedule_due
from vmdr.control.workflows.to_cloud import cloud_kinds
from vmdr.control.workflows.to_onprem import onprem_kinds
from vmdr.control.workflows.transfer_plan import plan_kind
from vmdr.control.workflows.upkeep import upkeep_kinds
from vmdr.model.errors import VmdrError

__all__ = [
    "AlreadyExists",
    "ChangedMeanwhile",
    "ConfigServer",
    "ConfigServerSettings",
    "NotFound",
    "job_kinds",
]

log = logging.getLogger(__name__)


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


def job_kinds(wf: Workflows) -> list[JobKind]:
    """Every job kind of the configuration server's workflows."""
    kinds = [*cloud_kinds(wf), *onprem_kinds(wf), *upkeep_kinds(wf), plan_kind(wf)]
    return [*kinds, group_kind(wf), replicate_kind(wf), plan_job_kind(wf), release_kind(wf)]


class ConfigServer:
    def __init__(self, settings: ConfigServerSettings) -> None:
        self.settings = settings
        self.engine = open_database(settings.url)
        self.sessions = session_factory(self.engine)
        self.secrets = SecretBox.in_folder(settings.state_dir)
        self.jobs = Engine(self.sessions, settings.url)
        self.jobs.register(
            JobKind("discover", [("discover", self._discover_step)], params=DiscoverParams)
        )
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
        self.jobs.every(
            "attachments", RECONCILE_SECONDS, lambda: reconcile_attachments(self.workflows)
        )
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
        from vmdr.providers.vsphere.errors import WrongEndpointKind

        with self.sessions() as s:
            vc = s.get(VCenter, ctx.params["vcenter"])
            if vc is None:
                raise NotFound(what="vcenter", id=ctx.params["vcenter"])
            kind, url = vc.kind, vc.url
        with self.workflows.vsphere(ctx.params["vcenter"]) as vms:
            inventory = vms.inventory()
        actual = "esx" if inventory.api_type == "HostAgent" else "vcenter"
        if actual != kind:
            raise WrongEndpointKind(address=url, actual=actual, expected=kind)
        with self.sessions.begin() as s:
            vc = s.get(VCenter, ctx.params["vcenter"])
            assert vc is not None
            counts = store_discovery(s, vc, inventory)
        ctx.progress("discover", 0, f"found {counts}")

    @property
    def backup_key(self) -> bytes:
        """This server's backup key (``<state>/backup.key``): it signs the
        backups this server makes; keep a copy apart from the archives."""
        return backup_key_in(self.settings.state_dir)

    def restore(
        self, archive: Path, signing_key: bytes | None, *, allow_unsigned: bool = False
    ) -> dict[str, Any]:
        """Load ``archive`` (signed with ``signing_key``: the key of the server
        that made it) into this fresh server; all or nothing."""
        with tempfile.TemporaryDirectory() as tmp:
            key = Path(tmp) / "secret.key"
            manifest = restore(self.engine, archive, signing_key=signing_key, key_file=key,
                               allow_unsigned=allow_unsigned)  # fmt: skip
            if key.exists():  # the archive's key replaces this fresh server's own
                assert self.secrets.path is not None
                write_atomically(self.secrets.path, key.read_bytes())
                self.secrets = SecretBox.in_folder(self.settings.state_dir)
        if signing_key is not None:  # this server's backups go on with the same key
            write_atomically(self.settings.state_dir / BACKUP_KEY_FILE, signing_key)
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
