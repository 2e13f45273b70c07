"""The master target's side of one change set: journal, then write, then ack.

For every run it receives, the applier first has the retention journal save
what the run will overwrite (durably), then writes the run into the target
disk through ``TargetWriter``. Progress is acknowledged as a disk offset:
runs arrive in ascending offset order, so "acked = N" means every run ending
at or before N is on the target disk *and* flushed. The ack is persisted
(atomically, beside the disk's record) every ``ACK_BYTES`` or ``ACK_SECONDS``
and at the end, after a flush of the target — so after a kill -9 the sender
resumes from an offset whose data is really on disk, and the journal's
idempotent capture keeps the undo data right for the runs sent again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmdr.blocks.backend import Backend
from vmdr.blocks.durable import write_atomically
from vmdr.blocks.messages import DataRun, DiskInfo, Done, Message, ZeroRun
from vmdr.blocks.operation import Counters, TargetWriter
from vmdr.blocks.retention import ChangeSetJournal, DiskJournal, RecoveryPoint
from vmdr.model.errors import VmdrError

__all__ = ["ChangeSetApplier", "SessionRecord", "load_session", "save_session"]

ACK_BYTES = 64 << 20
ACK_SECONDS = 1.0


class SessionError(VmdrError):
    code = "VMDR-E0422"
    http_status = 409
    msg = "change set {changeset!r} for disk {disk!r}: {detail}"
    fix = "Resend the change sets of this disk in order; `GET /v1/disks/{disk}` shows where it is."


@dataclass
class SessionRecord:
    """The open change set of a disk and how far it is applied."""

    changeset: str
    initial: bool
    acked: int
    started: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def save_session(path: Path, record: SessionRecord | None) -> None:
    if record is None:
        path.unlink(missing_ok=True)
        return
    write_atomically(path, json.dumps(record.to_dict()).encode())


def load_session(path: Path) -> SessionRecord | None:
    if not path.exists():
        return None
    return SessionRecord(**json.loads(path.read_text()))


class ChangeSetApplier:
    """Applies one change set's messages to ``target`` with undo journaling."""

    def __init__(
        self,
        disk_id: str,
        target: Backend,
        journal: DiskJournal,
        session_path: Path,
        changeset: str,
        *,
        initial: bool,
        resume_from: int,
    ) -> None:
        self.disk_id, self.target, self.session_path = disk_id, target, session_path
        current = load_session(session_path)
        if current is not None and current.changeset != changeset:
            raise SessionError(
                changeset=changeset,
                disk=disk_id,
                detail=f"change set {current.changeset!r} is still open",
            )
        if current is not None and resume_from > current.acked:
            raise SessionError(
                changeset=changeset,
                disk=disk_id,
                detail=f"resume from {resume_from} is past the acked offset {current.acked}",
            )
        self.record = current or SessionRecord(changeset, initial, 0, time.time())
        if current is None:
            save_session(session_path, self.record)
        self.journal: ChangeSetJournal = journal.begin(changeset, initial=self.record.initial)
        self.counters = Counters()
        self.writer = TargetWriter(target, self.counters)
        self.resume_from = resume_from
        self._unsaved = 0
        self._saved_at = time.monotonic()
        self.done = False

    @property
    def acked(self) -> int:
        return self.record.acked

    def apply(self, msg: Message) -> None:
        if isinstance(msg, DataRun | ZeroRun):
            length = msg.length
            if msg.offset < self.resume_from:
                raise SessionError(
                    changeset=self.record.changeset,
                    disk=self.disk_id,
                    detail=f"run at {msg.offset} is before the resume offset {self.resume_from}",
                )
            self.journal.capture(self.target, msg.offset, length)
            self.writer.apply(msg)
            self.record.acked = msg.offset + length
            self._unsaved += length
            if self._unsaved >= ACK_BYTES or time.monotonic() - self._saved_at >= ACK_SECONDS:
                self.checkpoint()
        elif isinstance(msg, DiskInfo):
            self.writer.apply(msg)
        elif isinstance(msg, Done):
            self.writer.apply(msg)
            self.record.acked = msg.size
            self.checkpoint()
            self.done = True
        else:
            self.writer.apply(msg)  # raises StreamError for what a target can't take

    def checkpoint(self) -> None:
        """Flush the target, then persist the ack (that order: see module doc)."""
        self.target.flush()
        save_session(self.session_path, self.record)
        self._unsaved = 0
        self._saved_at = time.monotonic()

    def cut(self, when: float, tag: str | None, kind: str) -> RecoveryPoint:
        """Seal the change set as a recovery point and close the session."""
        if not self.done:
            raise SessionError(
                changeset=self.record.changeset,
                disk=self.disk_id,
                detail="a point can only be cut after the change set's Done",
            )
        point = self.journal.commit(when, tag=tag, kind=kind, size=self.target.size())
        save_session(self.session_path, None)
        return point
