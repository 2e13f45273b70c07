"""The configuration server's inventory database (SQLAlchemy 2, typed ORM).

The source documents make this database the memory of the whole system:
failback fails if the machine is not in it. Everything a workflow needs to
resume after a restart lives here: the inventory from discovery, the
registered roles, protected items with their life-cycle state
(``model.lifecycle``), recovery points and durable jobs with their events.

Ids are text (UUID4 strings) so that backups restore onto any database.
Secrets (vCenter passwords) are stored only encrypted (``secret_enc``, see
``control.secrets``); role tokens only as SHA-256 digests.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    or_,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

__all__ = [
    "AuditEntry",
    "Base",
    "Datastore",
    "Disk",
    "Host",
    "Job",
    "JobEvent",
    "Machine",
    "MasterTarget",
    "ProcessServer",
    "ProtectedItem",
    "RecoveryPlan",
    "RecoveryPoint",
    "ReplicationGroup",
    "ReplicationSample",
    "Site",
    "User",
    "UserSession",
    "VCenter",
    "Worker",
]


ACTIVE_JOB = "state IN ('queued', 'running')"


def new_id() -> str:
    return str(uuid.uuid4())


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        dt.datetime: DateTime(timezone=True),
    }


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # primary | recovery


class VCenter(Base):
    """A vCenter, or a standalone ESX host (``kind == "esx"``)."""

    __tablename__ = "vcenters"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"))
    name: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="vcenter")
    url: Mapped[str] = mapped_column(String(1024))
    user: Mapped[str] = mapped_column(String(255))
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    ca_pem: Mapped[str | None] = mapped_column(Text, default=None)
    # SHA-256 of its certificate (hex), pinned when there is no CA to check it.
    fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    discovered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # {"api_type", "datacenters": [...], "clusters": [{"name", "hosts"}]}
    topology: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")


class Host(Base):
    __tablename__ = "hosts"
    __table_args__ = (UniqueConstraint("vcenter_id", "moref"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    vcenter_id: Mapped[str] = mapped_column(ForeignKey("vcenters.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    moref: Mapped[str] = mapped_column(String(64))
    cluster: Mapped[str | None] = mapped_column(String(255), default=None)


class Datastore(Base):
    __tablename__ = "datastores"
    __table_args__ = (UniqueConstraint("vcenter_id", "moref"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    vcenter_id: Mapped[str] = mapped_column(ForeignKey("vcenters.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    moref: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))  # VMFS | vsan | NFS | ...
    host_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    rdm_supported: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Machine(Base):
    """A VM from discovery, or a physical server (``kind == "physical"``)."""

    __tablename__ = "machines"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    vcenter_id: Mapped[str | None] = mapped_column(
        ForeignKey("vcenters.id", ondelete="SET NULL"), default=None
    )
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16), default="vm")
    moref: Mapped[str | None] = mapped_column(String(64), default=None)
    host_id: Mapped[str | None] = mapped_column(String(36), default=None)
    guest_os: Mapped[str | None] = mapped_column(String(255), default=None)
    enable_uuid: Mapped[bool | None] = mapped_column(Boolean, default=None)
    snapshots: Mapped[int] = mapped_column(Integer, default=0)
    power_state: Mapped[str | None] = mapped_column(String(16), default=None)
    guest_full_name: Mapped[str | None] = mapped_column(String(255), default=None)
    annotation: Mapped[str | None] = mapped_column(Text, default=None)
    datastores: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # Set when discovery no longer finds the VM: kept, marked, never dropped
    # silently (failback to a deleted VM becomes alternate location recovery).
    vanished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    disks: Mapped[list[Disk]] = relationship(
        back_populates="machine", cascade="all, delete-orphan", order_by="Disk.unit"
    )


class Disk(Base):
    __tablename__ = "disks"
    __table_args__ = (UniqueConstraint("machine_id", "unit"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    machine_id: Mapped[str] = mapped_column(ForeignKey("machines.id", ondelete="CASCADE"))
    unit: Mapped[int] = mapped_column(Integer)
    uuid: Mapped[str | None] = mapped_column(String(64), default=None)
    capacity: Mapped[int] = mapped_column(BigInteger)
    datastore_id: Mapped[str | None] = mapped_column(String(36), default=None)
    path: Mapped[str] = mapped_column(String(1024))  # "[ds] folder/disk.vmdk"
    address: Mapped[str | None] = mapped_column(String(16), default=None)  # "scsi0:1"
    controller: Mapped[str | None] = mapped_column(String(32), default=None)
    backing: Mapped[str] = mapped_column(String(16), default="flat", server_default="flat")
    machine: Mapped[Machine] = relationship(back_populates="disks")


class ProcessServer(Base):
    __tablename__ = "process_servers"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    site_id: Mapped[str | None] = mapped_column(ForeignKey("sites.id"), default=None)
    url: Mapped[str] = mapped_column(String(1024))
    token_digest: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[dt.datetime] = mapped_column(default=now)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    health: Mapped[dict[str, Any]] = mapped_column(default=dict)


class MasterTarget(Base):
    __tablename__ = "master_targets"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    site_id: Mapped[str | None] = mapped_column(ForeignKey("sites.id"), default=None)
    url: Mapped[str] = mapped_column(String(1024))
    token_digest: Mapped[str] = mapped_column(String(64))
    host_id: Mapped[str | None] = mapped_column(String(36), default=None)
    machine_id: Mapped[str | None] = mapped_column(String(36), default=None)
    registered_at: Mapped[dt.datetime] = mapped_column(default=now)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    health: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The on-premises VM it runs in, and where that VM lived when discovery
    # first found it: a later difference is a storage vMotion, which the
    # source documents forbid (reprotect refuses it).
    vm_name: Mapped[str | None] = mapped_column(String(255), default=None)
    vm_datastores_at_registration: Mapped[list[str] | None] = mapped_column(JSON, default=None)


class ProtectedItem(Base):
    """A machine under protection; its life-cycle fields mirror
    ``model.lifecycle.ItemState``. ``version`` guards against lost updates."""

    __tablename__ = "protected_items"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    machine_id: Mapped[str] = mapped_column(ForeignKey("machines.id"), unique=True)
    state: Mapped[str] = mapped_column(String(32))
    active_site: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(32))
    running: Mapped[str | None] = mapped_column(String(32), default=None)
    previous: Mapped[str | None] = mapped_column(String(32), default=None)
    planned: Mapped[bool | None] = mapped_column(Boolean, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    process_server_id: Mapped[str | None] = mapped_column(String(36), default=None)
    master_target_id: Mapped[str | None] = mapped_column(String(36), default=None)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # What the replication interval counts from (epoch seconds: the last
    # cycle's start, jittered): the next cycle is due one interval later, so
    # a changed interval applies at once. None while it does not replicate.
    cycle_anchor: Mapped[float | None] = mapped_column(Float, default=None, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=now)
    updated_at: Mapped[dt.datetime] = mapped_column(default=now, onupdate=now)
    version: Mapped[int] = mapped_column(Integer, default=1)
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's own attribute


class RecoveryPoint(Base):
    __tablename__ = "recovery_points"
    __table_args__ = (UniqueConstraint("item_id", "disk_unit", "seq"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    item_id: Mapped[str] = mapped_column(ForeignKey("protected_items.id", ondelete="CASCADE"))
    disk_unit: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    time: Mapped[float] = mapped_column(Float)
    tag: Mapped[str | None] = mapped_column(String(128), default=None)
    kind: Mapped[str] = mapped_column(String(16), default="crash")
    location: Mapped[str | None] = mapped_column(String(2048), default=None)
    # A point cut for a whole replication group: every member has a row with
    # the same group_id and group_seq (and the same time).
    group_id: Mapped[str | None] = mapped_column(String(36), default=None)
    group_seq: Mapped[int | None] = mapped_column(Integer, default=None)


class ReplicationGroup(Base):
    """Protected items whose recovery points are cut together
    (``control/workflows/groups.py``)."""

    __tablename__ = "replication_groups"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    items: Mapped[list[str]] = mapped_column(JSON, default=list)  # protected item ids
    quiesce: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    cycle_anchor: Mapped[float | None] = mapped_column(Float, default=None, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=now)


class RecoveryPlan(Base):
    __tablename__ = "recovery_plans"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Job(Base):
    """A job's public record (``control/jobs``): a named sequence of
    idempotent steps run as a DBOS workflow of the same id; ``step`` is the
    index of the next step to run; ``parent_id`` the plan that started it."""

    __tablename__ = "jobs"
    # One queued or running job per protected item, enforced by the database.
    __table_args__ = (
        Index(
            "uq_jobs_active_item",
            "item_id",
            unique=True,
            sqlite_where=text(ACTIVE_JOB),
            postgresql_where=text(ACTIVE_JOB),
        ),
        Index("ix_jobs_state_created_at", "state", "created_at"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    step: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    parent_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=now, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=now, onupdate=now, index=True)


class Worker(Base):
    """A process that runs jobs, with its lease (``control/jobs/workers.py``)."""

    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # the DBOS executor id
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="alive")  # alive | dead
    started_at: Mapped[dt.datetime] = mapped_column(default=now)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(default=now)
    taken_over_by: Mapped[str | None] = mapped_column(String(128), default=None)


class JobEvent(Base):
    __tablename__ = "job_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    time: Mapped[dt.datetime] = mapped_column(default=now)
    step: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # start | end | error | progress
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    message: Mapped[str | None] = mapped_column(Text, default=None)


class TrafficProfile(Base):
    """A DNS name the traffic manager keeps pointed at the active site."""

    __tablename__ = "traffic_profiles"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    dns_name: Mapped[str] = mapped_column(String(255))
    ttl: Mapped[int] = mapped_column(Integer)
    routing: Mapped[str] = mapped_column(String(16), default="priority")
    item_id: Mapped[str | None] = mapped_column(String(36), default=None)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    published: Mapped[list[str] | None] = mapped_column(JSON, default=None)  # last set by vmdr
    updated_at: Mapped[dt.datetime] = mapped_column(default=now, onupdate=now)
    endpoints: Mapped[list[TrafficEndpoint]] = relationship(
        back_populates="profile", cascade="all, delete-orphan", order_by="TrafficEndpoint.priority"
    )


class TrafficEndpoint(Base):
    __tablename__ = "traffic_endpoints"
    __table_args__ = (UniqueConstraint("profile_id", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    profile_id: Mapped[str] = mapped_column(ForeignKey("traffic_profiles.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    site: Mapped[str] = mapped_column(String(16))  # primary | recovery
    address: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    probe: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    healthy: Mapped[bool | None] = mapped_column(Boolean, default=None)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    probed_at: Mapped[float | None] = mapped_column(Float, default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    profile: Mapped[TrafficProfile] = relationship(back_populates="endpoints")


class RoutingEvent(Base):
    __tablename__ = "routing_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    profile_id: Mapped[str] = mapped_column(
        ForeignKey("traffic_profiles.id", ondelete="CASCADE"), index=True
    )
    time: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)


class ReplicationSample(Base):
    """One measurement of an item's replication: the RPO just before a new
    point (to the cloud) or the process server's lag (to on-premises), and
    the bytes moved in ``seconds``. The dashboard's charts read these."""

    __tablename__ = "replication_samples"
    __table_args__ = (Index("ix_replication_samples_item_time", "item_id", "time"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("protected_items.id", ondelete="CASCADE"))
    time: Mapped[float] = mapped_column(Float)
    direction: Mapped[str] = mapped_column(String(32))
    rpo_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


Named = TypeVar("Named", RecoveryPlan, ReplicationGroup, TrafficProfile)


def by_id_or_name(s: Session, model: type[Named], ident: str) -> Named | None:
    """The row of ``model`` whose id or (unique) name is ``ident``: how the API
    and the CLI name plans, groups and traffic profiles."""
    return s.scalars(select(model).where(or_(model.id == ident, model.name == ident))).first()


class User(Base):
    """A person who uses vmdr, with a role (``control/access.py``)."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer | operator | administrator
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=now)


class UserSession(Base):
    """A login: the SHA-256 of its token (the token itself is never kept)."""

    __tablename__ = "user_sessions"
    token_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=now)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class AuditEntry(Base):
    """One state-changing request: who, what, when, and how it ended."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(default=now, index=True)
    principal: Mapped[str] = mapped_column(String(128))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(1024))
    status: Mapped[int] = mapped_column(Integer)
