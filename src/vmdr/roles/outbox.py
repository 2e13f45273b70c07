"""The process server's cache of outgoing change sets, on its own disk.

Every cut change set is written here as the frame stream it will be sent as
(``transport.frames``), durably (write to ``.tmp``, fsync, rename, fsync the
folder), *before* the source's dirty map is told the blocks were taken. It is
deleted only after the master target answered with the recovery point it
cut. So when the master target is unreachable, change sets pile up here in
order and are drained in that order when it is back: nothing is lost, nothing
is reordered, and a process server killed at any moment finds them again.

Layout: ``<cache>/<replication>/<seq:012d>.vcs``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from vmdr.blocks.durable import fsync_dir
from vmdr.model.errors import VmdrError

__all__ = ["Outbox", "OutboxFull"]

SUFFIX = ".vcs"


class OutboxFull(VmdrError):
    code = "VMDR-E0430"
    http_status = 507
    msg = "the process server's cache {path} holds {used} bytes, its limit is {limit}"
    fix = (
        "Bring the master target back (the cache drains by itself), or give the cache more "
        "room with `--cache-limit`. Changes are still tracked: none is lost meanwhile."
    )


class Outbox:
    """Ordered, durable change-set files of one replication."""

    def __init__(self, folder: Path, limit_bytes: int | None = None) -> None:
        self.folder = folder
        self.limit_bytes = limit_bytes
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.tmp"):  # a cut that never finished
            stale.unlink()

    def pending(self) -> list[int]:
        return sorted(int(p.stem) for p in self.folder.glob(f"*{SUFFIX}"))

    def path(self, seq: int) -> Path:
        return self.folder / f"{seq:012d}{SUFFIX}"

    def used_bytes(self) -> int:
        total = 0
        for path in self.folder.glob(f"*{SUFFIX}"):
            # A change set may be drained and removed while we look.
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def check_room(self) -> None:
        if self.limit_bytes is not None:
            used = self.used_bytes()
            if used >= self.limit_bytes:
                raise OutboxFull(path=str(self.folder), used=used, limit=self.limit_bytes)

    def put(self, seq: int, chunks: Iterable[bytes | memoryview]) -> int:
        """Store change set ``seq`` durably; returns its size in bytes."""
        final = self.path(seq)
        tmp = final.with_suffix(".tmp")
        size = 0
        with open(tmp, "wb") as f:
            for chunk in chunks:
                size += f.write(chunk)
            f.flush()
            os.fdatasync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(self.folder)
        return size

    def remove(self, seq: int) -> None:
        self.path(seq).unlink(missing_ok=True)
