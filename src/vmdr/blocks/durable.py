"""Small files that must survive a crash: written whole or not at all.

``write_atomically`` writes a temporary file beside the target, fsyncs it,
renames it over the target and fsyncs the folder, so after a power cut the
path holds either the old or the new content, never a mix. Each writer has
its own temporary file (concurrent writers of one path: the last rename
wins, none fails), removed when the write fails (a full disk: ENOSPC is
raised, the target is untouched). Files are created owner-only (0600) by
default: most of these hold state or secrets.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import suppress
from pathlib import Path

__all__ = ["fsync_dir", "write_all", "write_atomically"]


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written: a short write is
    retried, so a full drive raises ENOSPC instead of passing silently."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, mode)
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(name, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(name)
        raise
    fsync_dir(path.parent)
