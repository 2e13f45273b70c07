"""vmdr's own change tracking: a persistent dirty map of the writes made
through vmdr (the agent path), for disks whose service gives no honest diff.

``TrackedBackend`` wraps any backend; each ``write``, ``zero`` and grow marks
the blocks it touches in a ``DirtyMap`` *before* the request goes to the disk
(write-ahead), so after a crash the map can hold more than what changed,
never less. ``take()`` hands the dirty extents to a sync (``DirtyCopy``) and
starts a new map; the taken bits are kept aside until ``commit()`` says the
sync applied them, and a ``take()`` without a ``commit()`` returns them again
(a failed sync loses nothing).

File layout (all integers little-endian), ``<path>`` and ``<path>.taken``::

    MAGIC(8)="VMDRDMAP" VERSION(1)=1 RESERVED(3) BLOCK_SIZE(4) DISK_SIZE(8)
    GENERATION(8) IDENTITY(16) HEADER_CRC32(4) RESERVED(12)      -- 64 bytes
    BITMAP(ceil(blocks / 8))   bit i (LSB first in each byte) = block i dirty

IDENTITY is the first 16 bytes of the SHA-256 of the disk's URL without its
lease, so a map is never applied to another disk. GENERATION counts takes.
Bits are set in place (``pwrite`` of the changed bytes, then ``fdatasync``):
between takes a bit only goes from 0 to 1, so a torn write cannot lose a bit
that was set before. Resetting replaces the file atomically (rename).

One process at a time: a ``DirtyMap`` holds ``flock`` on ``<path>.lock``;
a second opener gets ``DirtyMapBusy``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vmdr.blocks.backend import Backend, Mode, ReadableBuffer, WritableBuffer
from vmdr.blocks.durable import write_atomically
from vmdr.blocks.extent import Extent, bitmap_to_extents
from vmdr.blocks.hashing import DEFAULT_BLOCK_SIZE, check_block_size
from vmdr.blocks.urls import open_backend
from vmdr.providers.azure.errors import DirtyMapBusy, DirtyMapInvalid

__all__ = ["DirtyMap", "TrackedBackend", "disk_identity", "open_tracked"]

MAGIC = b"VMDRDMAP"
VERSION = 1
_HEADER = struct.Struct("<8sB3xIQQ16s")  # up to the CRC
HEADER_SIZE = 64


def disk_identity(url: str) -> bytes:
    """16 bytes naming a disk: its URL without a lease or snapshot parameter."""
    base, _, query = url.partition("?")
    kept = "&".join(p for p in query.split("&") if p and not p.startswith(("lease=", "snapshot=")))
    return hashlib.sha256((base + ("?" + kept if kept else "")).encode()).digest()[:16]


class _MapFile:
    """One bitmap file: header fields and the bits (a numpy bool array)."""

    def __init__(self, block_size: int, size: int, generation: int, identity: bytes) -> None:
        self.block_size = block_size
        self.size = size
        self.generation = generation
        self.identity = identity
        self.bits: npt.NDArray[np.bool_] = np.zeros(self.nblocks, dtype=bool)

    @property
    def nblocks(self) -> int:
        return -(-self.size // self.block_size)

    def header(self) -> bytes:
        head = _HEADER.pack(
            MAGIC, VERSION, self.block_size, self.size, self.generation, self.identity
        )
        head += struct.pack("<I", zlib.crc32(head))
        return head.ljust(HEADER_SIZE, b"\0")

    def encode(self) -> bytes:
        return self.header() + np.packbits(self.bits, bitorder="little").tobytes()

    @classmethod
    def decode(cls, path: Path, data: bytes) -> _MapFile:
        def bad(detail: str) -> DirtyMapInvalid:
            return DirtyMapInvalid(path=str(path), detail=detail)

        if len(data) < HEADER_SIZE or data[:8] != MAGIC:
            raise bad("not a vmdr dirty map (bad magic)")
        _magic, version, block_size, size, generation, identity = _HEADER.unpack_from(data)
        (crc,) = struct.unpack_from("<I", data, _HEADER.size)
        if crc != zlib.crc32(data[: _HEADER.size]):
            raise bad("header checksum mismatch")
        if version != VERSION:
            raise bad(f"format version {version}, this vmdr reads {VERSION}")
        check_block_size(block_size)
        out = cls(block_size, size, generation, identity)
        packed = np.frombuffer(data, dtype=np.uint8, offset=HEADER_SIZE)
        if packed.size != -(-out.nblocks // 8):
            raise bad(f"bitmap holds {packed.size} bytes, {out.nblocks} blocks need more")
        out.bits = np.unpackbits(packed, count=out.nblocks, bitorder="little").astype(bool)
        return out


class DirtyMap:
    """The persistent dirty bitmap of one disk (see the module docstring).

    Thread-safe: ``mark`` may be called from several writer threads."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        url: str,
        size: int,
        block_size: int = DEFAULT_BLOCK_SIZE,
        sync: bool = True,
    ) -> None:
        self.path = Path(path)
        self.taken_path = self.path.with_name(self.path.name + ".taken")
        self.sync = sync
        self._lock = threading.Lock()
        self._lockfd = self._lock_file()
        try:
            self._map = self._load_or_create(url, size, check_block_size(block_size))
            self._fd = os.open(self.path, os.O_RDWR)
        except BaseException:
            os.close(self._lockfd)
            raise

    # -- opening ------------------------------------------------------------------
    def _lock_file(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DirtyMapBusy(path=str(self.path)) from None
        return fd

    def _load_or_create(self, url: str, size: int, block_size: int) -> _MapFile:
        identity = disk_identity(url)
        if not self.path.exists():
            fresh = _MapFile(block_size, size, 0, identity)
            write_atomically(self.path, fresh.encode())
            return fresh
        loaded = _MapFile.decode(self.path, self.path.read_bytes())
        if loaded.identity != identity:
            raise DirtyMapInvalid(
                path=str(self.path),
                detail=f"it belongs to another disk, not {url.partition('?')[0]!r}",
            )
        if loaded.block_size != block_size:
            detail = f"it tracks {loaded.block_size}-byte blocks, not {block_size}"
            raise DirtyMapInvalid(path=str(self.path), detail=detail)
        if loaded.size != size:
            detail = f"it tracks {loaded.size} bytes, the disk has {size}"
            raise DirtyMapInvalid(path=str(self.path), detail=detail)
        return loaded

    # -- tracking -----------------------------------------------------------------
    @property
    def block_size(self) -> int:
        return self._map.block_size

    @property
    def generation(self) -> int:
        return self._map.generation

    def mark(self, offset: int, length: int) -> None:
        """Record that ``[offset, offset+length)`` changes; durable on return."""
        self.mark_many([(offset, length)])

    def mark_many(self, extents: list[tuple[int, int]]) -> None:
        """``mark`` each ``(offset, length)``, with one flush at the end: the
        form a dirty-map feed from the source side arrives in."""
        with self._lock:
            changed = [self._set_bits(offset, length) for offset, length in extents]
            if self.sync and any(changed):
                os.fdatasync(self._fd)

    def _set_bits(self, offset: int, length: int) -> bool:
        if length <= 0:
            return False
        bs = self._map.block_size
        first, end = offset // bs, min(-(-(offset + length) // bs), self._map.nblocks)
        bits = self._map.bits
        if end <= first or bits[first:end].all():
            return False  # already dirty: the common case of a hot block costs nothing
        bits[first:end] = True
        lo, hi = first // 8, -(-end // 8)
        packed = np.packbits(bits[lo * 8 : hi * 8], bitorder="little").tobytes()
        os.pwrite(self._fd, packed, HEADER_SIZE + lo)
        return True

    def dirty(self) -> list[Extent]:
        """What changed since the last take (not taken, nothing reset)."""
        with self._lock:
            return bitmap_to_extents(self._map.bits, self._map.block_size, self._map.size)

    def take(self) -> list[Extent]:
        """The dirty extents since the last commit, and a fresh map from now on.

        Atomic with respect to ``mark``: a block marked concurrently is in
        either this take or the next. Call it when no write is in flight (after
        the writer stopped, or through ``TrackedBackend.take``): a write marked
        before the take but landing after the sync read its block would be
        missed. The taken bits stay in ``<path>.taken`` until ``commit``; an
        uncommitted take is returned again by the next."""
        with self._lock:
            current = self._map
            union = current.bits.copy()
            pending = self._pending()
            if pending is not None:
                n = min(pending.bits.size, union.size)
                union[:n] |= pending.bits[:n]
            taken = _MapFile(current.block_size, current.size, current.generation, current.identity)
            taken.bits = union
            write_atomically(self.taken_path, taken.encode())
            fresh = _MapFile(
                current.block_size, current.size, current.generation + 1, current.identity
            )
            self._replace(fresh)
            return bitmap_to_extents(union, current.block_size, current.size)

    def commit(self) -> None:
        """The last take's extents were applied: forget them."""
        with self._lock, contextlib.suppress(FileNotFoundError):
            self.taken_path.unlink()

    def resize(self, size: int) -> None:
        """Follow the disk's new size; a grown region is dirty."""
        with self._lock:
            old = self._map
            grown = _MapFile(old.block_size, size, old.generation, old.identity)
            n = min(old.bits.size, grown.bits.size)
            grown.bits[:n] = old.bits[:n]
            if size > old.size:
                grown.bits[old.size // old.block_size :] = True
            self._replace(grown)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            if self._lockfd >= 0:
                os.close(self._lockfd)
                self._lockfd = -1

    def __enter__(self) -> DirtyMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pending(self) -> _MapFile | None:
        if not self.taken_path.exists():
            return None
        return _MapFile.decode(self.taken_path, self.taken_path.read_bytes())

    def _replace(self, new: _MapFile) -> None:
        write_atomically(self.path, new.encode())
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR)
        self._map = new


class TrackedBackend(Backend):
    """A backend whose writes, zeroes and grows are recorded in a DirtyMap.

    Take the map through ``take()`` here, not on the map directly, while the
    disk is written: it holds back new writes and waits for the ones in flight
    (``flush``) before it takes, so no write can land after the take without
    being in the next map."""

    def __init__(self, inner: Backend, dirty_map: DirtyMap) -> None:
        super().__init__(inner.url, inner.mode)
        self.inner = inner
        self.map = dirty_map
        self.block_alignment = inner.block_alignment
        self.max_write = inner.max_write
        self.shareable = inner.shareable  # readers in other processes see the same bytes
        self.preferred_read: int = getattr(inner, "preferred_read", 256 << 10)
        self._io = threading.Lock()

    def __enter__(self) -> TrackedBackend:
        return self

    def size(self) -> int:
        return self.inner.size()

    def readinto(self, offset: int, buf: WritableBuffer) -> int:
        return self.inner.readinto(offset, buf)

    def write(self, offset: int, buf: ReadableBuffer) -> int:
        self._check_writable()
        length = len(memoryview(buf).cast("B"))
        self._check_range("write", offset, length, self.inner.size())
        with self._io:
            self.map.mark(offset, length)
            return self.inner.write(offset, buf)

    def zero(self, offset: int, length: int) -> None:
        self._check_writable()
        self._check_range("zero", offset, length, self.inner.size())
        with self._io:
            self.map.mark(offset, length)
            self.inner.zero(offset, length)

    def flush(self) -> None:
        self.inner.flush()

    def extents(self, context: str = "zero") -> Iterator[Extent]:
        return self.inner.extents(context)

    def resize(self, size: int) -> None:
        with self._io:
            self.inner.resize(size)
            self.map.resize(size)

    def take(self) -> list[Extent]:
        """The dirty extents since the last commit (see ``DirtyMap.take``)."""
        with self._io:
            self.inner.flush()
            return self.map.take()

    def commit(self) -> None:
        self.map.commit()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.inner.close()
        finally:
            self.map.close()
            self.closed = True


def open_tracked(
    url: str,
    map_path: str | os.PathLike[str],
    mode: Mode = "rw",
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    sync: bool = True,
) -> TrackedBackend:
    """Open the disk at ``url`` with its dirty map at ``map_path`` (created if missing)."""
    inner = open_backend(url, mode)
    try:
        dirty_map = DirtyMap(map_path, url=url, size=inner.size(), block_size=block_size, sync=sync)
    except BaseException:
        inner.close()
        raise
    return TrackedBackend(inner, dirty_map)
