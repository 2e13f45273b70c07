"""What the process server and the master target accept and answer over
HTTP: the server validates requests with these models, and the typed clients
(``roles/clients.py``) send them, so both sides share one definition."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, model_validator

from vmdr.blocks.hashing import DEFAULT_BLOCK_SIZE
from vmdr.model.ids import ID_PATTERN
from vmdr.transport.grants import MAX_GRANT, target_names

# A VMDK UUID as vSphere shows it (``6000C29d-e45f-…``) or as 32 hex digits.
VMDK_UUID = r"^[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}$"


class TargetFields(BaseModel):
    """The disk a master target writes: ``device``, the VMDK UUID of a disk
    attached to its VM (found under /dev/disk/by-id), or a ``path`` in one
    of its datastore folders."""

    datastore: str | None = Field(default=None, max_length=128)
    path: str | None = Field(default=None, min_length=1, max_length=512)
    device: str | None = Field(default=None, pattern=VMDK_UUID)

    @model_validator(mode="after")
    def _one_target(self) -> TargetFields:
        if (self.path is None) == (self.device is None):
            raise ValueError("name the target disk by exactly one of path or device")
        if self.device is not None and self.datastore is not None:
            raise ValueError("a device is not in a datastore: give no datastore with it")
        return self

    def target_names(self) -> dict[str, Any]:
        return target_names(self.datastore, self.path, self.device)


__all__ = [
    "BeginControl",
    "CutControl",
    "DigestRequest",
    "DirtyFeed",
    "DiskSpec",
    "MaterialiseRequest",
    "NewReplication",
    "PointRequest",
    "ReplicationStatus",
    "TargetFields",
]


# -- the process server ------------------------------------------------------------------
class NewReplication(TargetFields):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID_PATTERN)
    source: str = Field(min_length=1, max_length=2048)
    initial: Literal["full", "diff"] = "full"
    interval: float = Field(default=300.0, ge=1.0, le=86400.0)
    block_size: int = DEFAULT_BLOCK_SIZE
    # The configuration server's grant for this source, disk and target
    # (``transport.grants``); handed on to the master target.
    grant: str | None = Field(default=None, max_length=MAX_GRANT)


class DirtyFeed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    extents: list[tuple[NonNegativeInt, PositiveInt]] = Field(max_length=1_000_000)


class PointRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tag: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    kind: Literal["crash", "app"] = "app"
    wait: float = Field(default=60.0, ge=0.0, le=3600.0)


class ReplicationStatus(BaseModel):
    """One replication as the process server reports it (the fields its
    clients act on; the rest of the report is kept as it came)."""

    model_config = ConfigDict(extra="allow")
    id: str
    phase: str
    initial_done: bool
    sent_bytes: int = 0
    lag_seconds: float | None = None
    error: dict[str, Any] | None = None


# -- the master target -------------------------------------------------------------------
class DiskSpec(TargetFields):
    model_config = ConfigDict(extra="forbid")
    size: int | None = Field(default=None, ge=0, le=1 << 46)
    create: bool = False
    grant: str | None = Field(default=None, max_length=MAX_GRANT)


class DigestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    block_size: int = DEFAULT_BLOCK_SIZE
    start_block: int = Field(default=0, ge=0)
    size: int = Field(ge=0, le=1 << 46)


class MaterialiseRequest(TargetFields):
    model_config = ConfigDict(extra="forbid")
    point: str | float = "latest"
    grant: str | None = Field(default=None, max_length=MAX_GRANT)


# -- control frames of a change-set stream (``roles/sender.py``) --------------------------
class BeginControl(BaseModel):
    """Opens a change set: ``resume_from`` is the sender's byte offset."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["begin"]
    initial: bool = False
    resume_from: NonNegativeInt = Field(default=0, le=1 << 46)


class CutControl(BaseModel):
    """Seals a change set as a recovery point."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["cut"]
    time: float = Field(ge=0.0, allow_inf_nan=False)
    tag: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    kind: Literal["crash", "app", "initial"] = "crash"
