"""The retention journal: what a master target keeps on its retention drive so
a disk can go back to any recovery point inside the retention window.

It is an *undo* journal. The target disk always holds the newest data; before
a change set overwrites a range, the range's old bytes are saved
(``journal.UndoFile``). Change set ``n`` leads from point ``n-1`` to point
``n``; to see the disk at point ``p``, start from the current disk and apply
the undo records of the open change set (if any) and of change sets ``m, m-1,
… p+1``, newest first. Why undo rather than redo: the replica stays current
(a failover at the latest point needs no replay) and pruning is deleting the
oldest files.

Layout of ``<root>/<disk>/``::

    points.log          one line per recovery point: JSON + " " + crc32 (hex), fsynced
    open.json           the open change set: {"changeset", "seq", "initial"}
    <seq:012d>.undo     undo records of the change set that leads to point <seq>

Commit order: undo records are durable before each write (capture); then the
point line is appended and fsynced; then ``open.json`` is removed. On
reopening, an ``open.json`` whose change set already has a point is stale and
dropped; a torn last line of ``points.log`` is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import zlib
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from vmdr.blocks.backend import Backend
from vmdr.blocks.copy import FullCopy
from vmdr.blocks.durable import write_all, write_atomically
from vmdr.blocks.journal import UndoFile, appended_whole
from vmdr.blocks.operation import Counters
from vmdr.blocks.retention_errors import (
    BadDiskId,
    JournalCorrupt,
    NoRecoveryPoint,
    PointExpired,
    RetentionFull,
    RetentionMissing,
)
from vmdr.model.ids import is_id

__all__ = ["ChangeSetJournal", "DiskJournal", "RecoveryPoint", "RetentionStore"]


@dataclass(frozen=True)
class RecoveryPoint:
    seq: int
    changeset_id: str
    time: float
    tag: str | None = None
    kind: str = "crash"  # "crash" | "app" | "initial"
    size: int = 0


def _line(point: RecoveryPoint) -> bytes:
    text = json.dumps(asdict(point), separators=(",", ":"))
    return f"{text} {zlib.crc32(text.encode()):08x}\n".encode()


class ChangeSetJournal:
    """The open change set of a disk: capture before writing, commit at the end."""

    def __init__(self, disk: DiskJournal, changeset: str, seq: int, initial: bool) -> None:
        self.disk, self.changeset, self.seq, self.initial = disk, changeset, seq, initial
        self.undo = UndoFile(disk.undo_path(seq), record=not initial)

    def capture(self, target: Backend, offset: int, length: int) -> None:
        """Save what ``[offset, offset+length)`` holds now, unless already saved
        in this change set; durable on return (see ``journal``)."""
        self.disk.store.check_ready()
        self.undo.capture(target, offset, length)

    def commit(
        self, when: float, tag: str | None = None, kind: str = "crash", size: int = 0
    ) -> RecoveryPoint:
        point = RecoveryPoint(self.seq, self.changeset, when, tag, kind, size)
        self.undo.close()
        self.disk.append_point(point)
        self.disk.open_path.unlink(missing_ok=True)
        self.disk.current = None
        return point


class DiskJournal:
    def __init__(self, store: RetentionStore, disk_id: str) -> None:
        if not is_id(disk_id):
            raise BadDiskId(disk=disk_id)
        self.store = store
        self.folder = store.root / disk_id
        self.points_path = self.folder / "points.log"
        self.open_path = self.folder / "open.json"
        self.current: ChangeSetJournal | None = None

    def undo_path(self, seq: int) -> Path:
        return self.folder / f"{seq:012d}.undo"

    # -- points -------------------------------------------------------------
    def points(self) -> list[RecoveryPoint]:
        if not self.points_path.exists():
            return []
        out = []
        for raw in self.points_path.read_bytes().splitlines():
            text, _, crc = raw.decode(errors="replace").rpartition(" ")
            if not text or f"{zlib.crc32(text.encode()):08x}" != crc:
                break  # a torn last line
            out.append(RecoveryPoint(**json.loads(text)))
        return out

    def append_point(self, point: RecoveryPoint) -> None:
        """One line, durable, or none: a line cut short by a full drive is
        cut off again, so that later points do not follow a torn one."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.points_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                     0o600)  # fmt: skip
        try:
            with appended_whole(fd, self.store.root):
                write_all(fd, _line(point))
        finally:
            os.close(fd)

    def find(self, spec: str | float, now: float | None = None) -> RecoveryPoint:
        """``latest``, ``latest-tagged``, ``tag:NAME`` or a time (epoch seconds)."""
        points = self.points()
        if not points:
            raise NoRecoveryPoint(disk=self.folder.name, spec=str(spec))
        if spec == "latest":
            return points[-1]
        if spec == "latest-tagged" or (isinstance(spec, str) and spec.startswith("tag:")):
            name = spec[4:] if spec != "latest-tagged" else None
            for point in reversed(points):
                if point.tag and (name is None or point.tag == name):
                    return point
            raise NoRecoveryPoint(disk=self.folder.name, spec=str(spec))
        try:
            when = float(spec)
        except ValueError:
            raise NoRecoveryPoint(disk=self.folder.name, spec=str(spec)) from None
        for point in reversed(points):
            if point.time <= when:
                return point
        window = self.store.window.total_seconds()
        if when < (now if now is not None else time.time()) - window:
            raise PointExpired(disk=self.folder.name, when=when, hours=window / 3600)
        raise NoRecoveryPoint(disk=self.folder.name, spec=str(spec))

    # -- change sets ----------------------------------------------------------
    def begin(self, changeset: str, *, initial: bool = False) -> ChangeSetJournal:
        """Start change set ``changeset``, or reopen it after a crash."""
        self.store.check_ready()
        self.folder.mkdir(parents=True, exist_ok=True)
        points = self.points()
        if self.open_path.exists():
            info = json.loads(self.open_path.read_text())
            if points and points[-1].changeset_id == info["changeset"]:
                self.open_path.unlink()  # committed; only the clean-up was lost
            elif info["changeset"] != changeset:
                raise JournalCorrupt(
                    disk=self.folder.name,
                    detail=f"change set {info['changeset']!r} is open, not {changeset!r}",
                )
            else:
                self.current = ChangeSetJournal(self, changeset, info["seq"], info["initial"])
                return self.current
        seq = points[-1].seq + 1 if points else 1
        # Only a disk with no point may skip undo records: on one with points,
        # a sender's "initial" would let the earlier points materialise wrong.
        initial = initial and not points
        info = {"changeset": changeset, "seq": seq, "initial": initial}
        write_atomically(self.open_path, json.dumps(info).encode())
        self.current = ChangeSetJournal(self, changeset, seq, initial)
        return self.current

    def _open_undo(self) -> UndoFile | None:
        if not self.open_path.exists():
            return None
        info = json.loads(self.open_path.read_text())
        points = self.points()
        if points and points[-1].changeset_id == info["changeset"]:
            return None
        path = self.undo_path(info["seq"])
        return UndoFile(path) if path.exists() else None

    def _undo_after(self, point: RecoveryPoint) -> list[UndoFile]:
        """Undo files to apply, newest first, to go from now back to ``point``."""
        files: list[UndoFile] = []
        open_undo = self._open_undo()
        if open_undo is not None:
            files.append(open_undo)
        for p in reversed(self.points()):
            if p.seq <= point.seq:
                break
            path = self.undo_path(p.seq)
            if not path.exists():
                raise JournalCorrupt(disk=self.folder.name, detail=f"{path.name} is missing")
            files.append(UndoFile(path))
        return files

    def materialise(self, current: Backend, point: RecoveryPoint, out: Backend) -> Counters:
        """Write to ``out`` the disk as it was at ``point``; ``current`` and the
        journal are not changed."""
        counters = FullCopy(current, out).run()
        for undo in self._undo_after(point):
            try:
                counters.written += undo.apply(out)
            finally:
                undo.close()
        out.flush()
        return counters

    def revert(self, current: Backend, point: RecoveryPoint) -> None:
        """Return ``current`` itself to ``point`` and forget newer points (the
        commit of a recovery to an earlier point). Interrupted, it can be run
        again with the same point: applying undo records is idempotent until
        the journal is cut, which happens last."""
        for undo in self._undo_after(point):
            try:
                undo.apply(current)
            finally:
                undo.close()
        current.flush()
        kept = [p for p in self.points() if p.seq <= point.seq]
        write_atomically(self.points_path, b"".join(_line(p) for p in kept))
        self.open_path.unlink(missing_ok=True)
        for path in self.folder.glob("*.undo"):
            if int(path.stem) > point.seq:
                path.unlink()

    def prune(self, now: float) -> int:
        """Drop points older than the window (keeping the newest) and the undo
        data only they needed; returns the bytes freed."""
        points = self.points()
        if not points:
            return 0
        cutoff = now - self.store.window.total_seconds()
        kept = [p for p in points if p.time >= cutoff] or [points[-1]]
        oldest = kept[0]
        freed = 0
        for path in self.folder.glob("*.undo"):
            if int(path.stem) <= oldest.seq:
                freed += path.stat().st_size
                path.unlink()
        if len(kept) != len(points):
            write_atomically(self.points_path, b"".join(_line(p) for p in kept))
        return freed

    def drop(self) -> None:
        """Forget the disk's journal entirely (replication disabled)."""
        shutil.rmtree(self.folder, ignore_errors=True)


class RetentionStore:
    """The retention drive: one ``DiskJournal`` per disk under ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        window: timedelta = timedelta(hours=24),
        quota_bytes: int | None = None,
        min_free_bytes: int = 256 << 20,
    ) -> None:
        self.root = root
        self.window = window
        self.quota_bytes = quota_bytes
        self.min_free_bytes = min_free_bytes

    def check_ready(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK | os.X_OK):
            raise RetentionMissing(path=str(self.root))
        st = os.statvfs(self.root)
        free = st.f_bavail * st.f_frsize
        if free < self.min_free_bytes:
            raise RetentionFull(
                path=str(self.root),
                detail=f"{free} bytes free, {self.min_free_bytes} must stay free",
            )
        if self.quota_bytes is not None:
            used = self.used_bytes()
            if used >= self.quota_bytes:
                raise RetentionFull(
                    path=str(self.root),
                    detail=f"journals use {used} bytes, the quota is {self.quota_bytes}",
                )

    def used_bytes(self) -> int:
        total = 0
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    total += os.stat(os.path.join(dirpath, name)).st_blocks * 512
        return total

    def disk(self, disk_id: str) -> DiskJournal:
        return DiskJournal(self, disk_id)

    def disks(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and is_id(p.name))

    def usage(self) -> dict[str, Any]:
        ready, why = True, None
        try:
            self.check_ready()
        except (RetentionMissing, RetentionFull) as exc:
            ready, why = False, exc.to_dict()
        free = None
        if self.root.is_dir():
            st = os.statvfs(self.root)
            free = st.f_bavail * st.f_frsize
        times = [p.time for d in self.disks() for p in self.disk(d).points()]
        return {
            "path": str(self.root),
            "ready": ready,
            "problem": why,
            "used_bytes": self.used_bytes() if self.root.is_dir() else 0,
            "free_bytes": free,
            "quota_bytes": self.quota_bytes,
            "min_free_bytes": self.min_free_bytes,
            "window_hours": self.window.total_seconds() / 3600,
            "disks": len(self.disks()),
            "oldest_point": min(times) if times else None,
            "newest_point": max(times) if times else None,
        }

    def prune(self, now: float) -> int:
        return sum(self.disk(d).prune(now) for d in self.disks())
