"""Undo records of one change set: the on-disk file and its index.

File ``<seq:012d>.undo``, a sequence of records (little-endian)::

    MAGIC(4)="UNDO" OFFSET(8) LENGTH(4) FLAGS(1) STORED(4) CHECKSUM(8)   -- 29 bytes
    PAYLOAD(STORED)

FLAGS bit 0: the range was all zeros (no payload); bit 1: the payload is
zstd-compressed. CHECKSUM is xxh3-64 of the header's first 21 bytes and the
payload as stored. A record is appended and fdatasync'ed before the caller
may overwrite its range; on reopening, records are read until the first one
that is torn or fails its checksum, and the file is cut there — safe, because
a record that was not fully on disk was never followed by the write it
protects.

A capture that cannot be saved whole (a full drive: ENOSPC, or a short
write) cuts the file back to where it began and raises ``RetentionFull``:
nothing of it counts as saved, so the caller does not overwrite the range,
and later records never follow a torn one (a scan would stop there and lose
them).
"""

from __future__ import annotations

import bisect
import errno
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash
import zstandard

from vmdr.blocks.backend import Backend
from vmdr.blocks.durable import write_all
from vmdr.blocks.retention_errors import RetentionFull

__all__ = ["CapturedRanges", "UndoFile", "UndoRecord", "appended_whole"]

MAGIC = b"UNDO"
_HEAD = struct.Struct("<4sQIBI")
_HEAD_SIZE = _HEAD.size + 8
F_ZERO, F_ZSTD = 0x01, 0x02
CHUNK = 4 << 20
_RATIO = 0.9


@dataclass(frozen=True)
class UndoRecord:
    offset: int
    length: int
    flags: int
    payload: bytes

    def data(self) -> bytes:
        if self.flags & F_ZERO:
            return bytes(self.length)
        if self.flags & F_ZSTD:
            return zstandard.ZstdDecompressor().decompress(
                self.payload, max_output_size=self.length
            )
        return self.payload


class CapturedRanges:
    """Sorted disjoint ``[lo, hi)`` ranges that grow; ``missing`` gives gaps."""

    def __init__(self) -> None:
        self._lo: list[int] = []
        self._hi: list[int] = []

    def add(self, lo: int, hi: int) -> None:
        i = bisect.bisect_left(self._hi, lo)
        j = bisect.bisect_right(self._lo, hi)
        if i < j:
            lo, hi = min(lo, self._lo[i]), max(hi, self._hi[j - 1])
        self._lo[i:j] = [lo]
        self._hi[i:j] = [hi]

    def missing(self, lo: int, hi: int) -> list[tuple[int, int]]:
        out, pos = [], lo
        i = bisect.bisect_right(self._hi, lo)
        while i < len(self._lo) and self._lo[i] < hi:
            if self._lo[i] > pos:
                out.append((pos, self._lo[i]))
            pos = max(pos, self._hi[i])
            i += 1
        if pos < hi:
            out.append((pos, hi))
        return out

    def total(self) -> int:
        return sum(self._hi) - sum(self._lo)


def _all_zero(data: memoryview) -> bool:
    n = len(data) // 8 * 8
    if n and np.frombuffer(data[:n], dtype=np.uint64).any():
        return False
    return not any(data[n:])


@contextmanager
def appended_whole(fd: int, drive: Path) -> Iterator[None]:
    """What is appended to ``fd`` inside is durable on exit, whole, or cut
    back to where it began: a full ``drive`` is ``RetentionFull``, another
    error is raised as it is."""
    start = os.fstat(fd).st_size
    try:
        yield
        os.fdatasync(fd)
    except OSError as exc:
        os.ftruncate(fd, start)  # none of it counts: no torn record stays
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise RetentionFull(path=str(drive), detail=str(exc)) from exc
        raise


class UndoFile:
    """Append-only undo records of one change set."""

    def __init__(self, path: Path, *, record: bool = True) -> None:
        self.path = path
        self.record = record  # False for an initial sync: nothing to undo to
        self.captured = CapturedRanges()
        self._zstd = zstandard.ZstdCompressor(level=1)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        good = 0
        for end, rec in self._scan():
            self.captured.add(rec.offset, rec.offset + rec.length)
            good = end
        if good != os.fstat(self._fd).st_size:
            os.ftruncate(self._fd, good)  # a torn last record: its write never happened
            os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _scan(self) -> Iterator[tuple[int, UndoRecord]]:
        pos, size = 0, os.fstat(self._fd).st_size
        while pos + _HEAD_SIZE <= size:
            head = os.pread(self._fd, _HEAD_SIZE, pos)
            magic, offset, length, flags, stored = _HEAD.unpack_from(head)
            (checksum,) = struct.unpack_from("<Q", head, _HEAD.size)
            if magic != MAGIC or pos + _HEAD_SIZE + stored > size:
                return
            payload = os.pread(self._fd, stored, pos + _HEAD_SIZE)
            if xxhash.xxh3_64_intdigest(head[: _HEAD.size] + payload) != checksum:
                return
            pos += _HEAD_SIZE + stored
            yield pos, UndoRecord(offset, length, flags, payload)

    def records(self) -> Iterator[UndoRecord]:
        for _, rec in self._scan():
            yield rec

    def capture(self, target: Backend, offset: int, length: int) -> int:
        """Save the current bytes of the not-yet-captured parts of the range;
        durable on return. Returns the bytes appended to the file."""
        if not self.record:
            return 0
        end = min(offset + length, target.size())
        missing = self.captured.missing(offset, end)
        if not missing:
            return 0
        start = os.fstat(self._fd).st_size
        buf = bytearray(min(CHUNK, max(end - offset, 0)))
        with appended_whole(self._fd, self.path.parent):
            for lo, hi in missing:
                for pos in range(lo, hi, CHUNK):
                    n = min(CHUNK, hi - pos)
                    view = memoryview(buf)[:n]
                    target.readinto(pos, view)
                    self._append(pos, view)
        for lo, hi in missing:  # saved and durable: only now
            self.captured.add(lo, hi)
        return os.fstat(self._fd).st_size - start

    def _append(self, offset: int, data: memoryview) -> None:
        flags, payload = 0, b""
        if _all_zero(data):
            flags = F_ZERO
        else:
            packed = self._zstd.compress(data)
            if len(packed) < _RATIO * len(data):
                flags, payload = F_ZSTD, packed
            else:
                payload = bytes(data)
        head = _HEAD.pack(MAGIC, offset, len(data), flags, len(payload))
        checksum = xxhash.xxh3_64_intdigest(head + payload)
        write_all(self._fd, head + struct.pack("<Q", checksum) + payload)

    def apply(self, target: Backend) -> int:
        """Write every record's old bytes back into ``target``."""
        n = 0
        for rec in self.records():
            target.write(rec.offset, rec.data())
            n += rec.length
        return n
