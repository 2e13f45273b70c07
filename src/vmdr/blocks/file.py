"""The ``file:`` backend: raw images, ``-flat.vmdk`` extents, monolithicFlat
descriptors (parsed below: "VMDK descriptors") and block devices.

- Holes are found with ``SEEK_DATA``/``SEEK_HOLE`` and reported as zero extents.
- ``zero`` punches a hole (``fallocate(PUNCH_HOLE|KEEP_SIZE)``) for ranges of
  1 MiB or more and uses ``fallocate(ZERO_RANGE)`` below that; where the file
  system refuses both, it writes zeros.
- Writes never extend the file (a disk has a size; ``resize`` changes it).
- ``map_read`` maps the range read-only and asks the kernel to fill the page
  tables at once (``MADV_POPULATE_READ``, Linux 5.14+): hashing a mapped
  window skips the copy into a buffer, about a third less time per disk
  (docs/performance.md). A file truncated under a mapping, or a failing read
  of a mapped page, raises SIGBUS when the page is touched, so only worker
  processes map (``parallel``). Where the file system refuses to map, it
  reads through a buffer instead.
- Write-behind: after every ``write_behind`` bytes of a sequential stream,
  writeback of that window starts (``sync_file_range(SYNC_FILE_RANGE_WRITE)``)
  and the window before it is waited for, as nbdcopy does; scattered writes
  are kicked every 2 MiB without waiting. So ``flush`` at the end has little
  left to do (docs/performance.md has numbers).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import cast
from urllib.parse import unquote, urlsplit

from vmdr.blocks.backend import Backend, Mode, ReadableBuffer, WritableBuffer
from vmdr.blocks.errors import (
    BackendIOError,
    BadDescriptor,
    BadURL,
    DiskNotFound,
    ReadOnlyTarget,
    Unsupported,
)
from vmdr.blocks.extent import Extent

log = logging.getLogger(__name__)

__all__ = ["FileBackend", "FlatExtent", "open_url", "parse_descriptor", "path_of", "sniff"]

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_FALLOC_FL_ZERO_RANGE = 0x10
_PUNCH_MIN = 1 << 20
_SYNC_FILE_RANGE_WAIT_BEFORE = 0x1
_SYNC_FILE_RANGE_WRITE = 0x2
_READONLY_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}
_ZEROS = bytes(1 << 20)
_DEFAULT_WRITE_BEHIND = 32 << 20
_SCATTERED_WRITE_BEHIND = 2 << 20
_MADV_POPULATE_READ = 22  # Linux 5.14; Python 3.11's mmap module lacks the name
# mmap refused by the file system (some FUSE or network mounts): read through
# a buffer instead, slower but the same bytes.
_NO_MAP_ERRNOS = {errno.ENODEV, errno.EACCES, errno.EINVAL, errno.EOPNOTSUPP}


def _libc_function(
    name: str, *argtypes: type[ctypes._SimpleCData[int]]
) -> Callable[..., int] | None:
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (AttributeError, OSError):
        return None
    fn.argtypes = list(argtypes)
    fn.restype = ctypes.c_int
    return cast("Callable[..., int]", fn)


# Python's os module has neither fallocate with mode flags nor sync_file_range.
_fallocate = _libc_function("fallocate", ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_sync_file_range = _libc_function(
    "sync_file_range", ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint
)


def path_of(url: str) -> str:
    """The file path a ``file:`` URL or plain path names."""
    if not url.lower().startswith("file:"):
        return url
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise BadURL(url=url, detail=f"file URLs name a local file, not host {parts.netloc!r}")
    if parts.query or parts.fragment:
        raise BadURL(url=url, detail="file URLs take no parameters")
    if not parts.path:
        raise BadURL(url=url, detail="no path")
    return unquote(parts.path)


class FileBackend(Backend):
    """A file or block device, optionally a window of it (a descriptor's extent)."""

    shareable = True
    mappable = True

    def __init__(
        self,
        url: str,
        mode: Mode,
        fd: int,
        *,
        fixed_size: int | None = None,
        write_behind: int = _DEFAULT_WRITE_BEHIND,
    ) -> None:
        super().__init__(url, mode)
        self.fd = fd
        st = os.fstat(fd)
        self._blockdev = stat.S_ISBLK(st.st_mode)
        self._fixed_size = fixed_size
        if self._blockdev and fixed_size is None:
            self._fixed_size = os.lseek(fd, 0, os.SEEK_END)
        self._unsupported: set[int] = set()
        self._write_behind = write_behind if _sync_file_range is not None else 0
        self._wb_lo = self._wb_hi = self._wb_bytes = 0  # written since the last kick
        self._wb_jumped = False  # ... not as one sequential stream
        self._wb_prev: tuple[int, int] | None = None
        self._populate = True

    @property
    def fixed_size(self) -> int | None:
        """The size of a device or a descriptor's extent; None for a file."""
        return self._fixed_size

    def size(self) -> int:
        if self._fixed_size is not None:
            return self._fixed_size
        return os.fstat(self.fd).st_size

    def readinto(self, offset: int, buf: WritableBuffer) -> int:
        view = memoryview(buf).cast("B")
        self._check_range("read", offset, len(view), self.size())
        done = 0
        while done < len(view):
            try:
                n = os.preadv(self.fd, [view[done:]], offset + done)
            except OSError as exc:
                raise self._io_error("read", exc) from exc
            if n == 0:
                raise BackendIOError(what="read", url=self.url, detail="file shrank under us")
            done += n
        return done

    @contextmanager
    def map_read(self, offset: int, length: int) -> Iterator[memoryview]:
        self._check_range("read", offset, length, self.size())
        mapping = self._map(offset, length) if length and self.mappable else None
        if mapping is None:  # nothing to map, or a file system that cannot
            buf = bytearray(length)
            if length:
                self.readinto(offset, buf)
            yield memoryview(buf)
            return
        view = memoryview(mapping)[offset % mmap.ALLOCATIONGRANULARITY :]
        try:
            yield view
        except BaseException:
            # An export still held by the traceback (a numpy array over the
            # view) makes close() raise BufferError, which would hide the
            # error that matters; the mapping then goes with the garbage.
            with suppress(BufferError):
                view.release()
                mapping.close()
            raise
        view.release()
        mapping.close()

    def _map(self, offset: int, length: int) -> mmap.mmap | None:
        """``[offset, offset+length)`` mapped from the page below ``offset``
        with its page tables filled, or None where the file cannot be mapped."""
        base = offset - offset % mmap.ALLOCATIONGRANULARITY
        try:
            mapping = mmap.mmap(self.fd, offset + length - base, prot=mmap.PROT_READ, offset=base)
        except ValueError as exc:  # Python's own check: the file is shorter now
            raise BackendIOError(what="read", url=self.url, detail="file shrank under us") from exc
        except OSError as exc:
            if exc.errno not in _NO_MAP_ERRNOS:
                raise self._io_error("read", exc) from exc
            log.debug("url=%s mmap errno=%d: reading through a buffer", self.url, exc.errno)
            self.mappable = False  # this file, from now on
            return None
        try:
            if self._populate:
                try:
                    mapping.madvise(_MADV_POPULATE_READ)
                except OSError as exc:
                    if exc.errno == errno.EFAULT:
                        detail = "file shrank under us, or a read of it failed"
                        raise BackendIOError(what="read", url=self.url, detail=detail) from exc
                    if exc.errno != errno.EINVAL:
                        raise self._io_error("read", exc) from exc
                    self._populate = False  # an older kernel: fault pages in as read
        except BaseException:
            mapping.close()
            raise
        return mapping

    def write(self, offset: int, buf: ReadableBuffer) -> int:
        self._check_writable()
        view = memoryview(buf).cast("B")
        self._check_range("write", offset, len(view), self.size())
        done = 0
        while done < len(view):
            try:
                done += os.pwritev(self.fd, [view[done:]], offset + done)
            except OSError as exc:
                raise self._io_error("write", exc) from exc
        if self._write_behind:
            self._start_writeback(offset, offset + done)
        return done

    def zero(self, offset: int, length: int) -> None:
        self._check_writable()
        self._check_range("zero", offset, length, self.size())
        if not length:
            return
        # Large ranges are punched out (space is freed, the file stays as
        # sparse as its source). Small ones are zeroed in place with
        # ZERO_RANGE, 20x cheaper per call on ext4 here (docs/performance.md),
        # and a thick disk stays thick.
        modes = [_FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE]
        if length < _PUNCH_MIN:
            modes.insert(0, _FALLOC_FL_ZERO_RANGE | _FALLOC_FL_KEEP_SIZE)
        for mode in modes:
            if _fallocate is None or mode in self._unsupported:
                continue
            if _fallocate(self.fd, mode, offset, length) == 0:
                return
            err = ctypes.get_errno()
            if err not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENODEV):
                raise self._io_error("zero", OSError(err, os.strerror(err)))
            self._unsupported.add(mode)  # this file system cannot: do not ask again
            log.debug("url=%s fallocate_mode=%#x unsupported errno=%d", self.url, mode, err)
        end = offset + length
        while offset < end:
            offset += self.write(offset, memoryview(_ZEROS)[: min(len(_ZEROS), end - offset)])

    def flush(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise self._io_error("flush", exc) from exc
        self._wb_bytes = 0
        self._wb_prev = None

    def extents(self, context: str = "zero") -> Iterator[Extent]:
        self._check_context(context)
        size = self.size()
        pos = 0
        while pos < size:
            try:
                data = os.lseek(self.fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after pos: the rest is a hole
                    data = size
                elif exc.errno == errno.EINVAL:  # no hole support: all data
                    yield Extent(pos, size - pos, zero=False)
                    return
                else:
                    raise self._io_error("extents", exc) from exc
            data = min(data, size)
            if data > pos:
                yield Extent(pos, data - pos, zero=True)
            if data >= size:
                return
            hole = min(os.lseek(self.fd, data, os.SEEK_HOLE), size)
            yield Extent(data, hole - data, zero=False)
            pos = hole

    def resize(self, size: int) -> None:
        self._check_writable()
        if self._fixed_size is not None:
            raise Unsupported(
                what="resize",
                url=self.url,
                hint="Resize the disk in vSphere (or the device), then run again.",
            )
        try:
            os.ftruncate(self.fd, size)
        except OSError as exc:
            raise self._io_error("resize", exc) from exc

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)

    def _start_writeback(self, lo: int, hi: int) -> None:
        # A sequential stream is kicked every write_behind bytes and the window
        # before is waited for (bounded dirty pages, as nbdcopy). Scattered
        # writes (a resync) are kicked every _SCATTERED_WRITE_BEHIND bytes and
        # never waited for: their I/O then runs while the disks are hashed,
        # and the fsync at Done finds almost nothing left (14 ms -> 1 ms on
        # the bench pair, docs/performance.md).
        if hi <= lo:
            return
        if not self._wb_bytes:
            self._wb_lo, self._wb_hi, self._wb_jumped = lo, hi, False
        else:
            self._wb_jumped = self._wb_jumped or lo != self._wb_hi
            self._wb_lo, self._wb_hi = min(self._wb_lo, lo), max(self._wb_hi, hi)
        self._wb_bytes += hi - lo
        if self._wb_bytes < (_SCATTERED_WRITE_BEHIND if self._wb_jumped else self._write_behind):
            return
        assert _sync_file_range is not None  # else _write_behind is 0 and we are not called
        window = (self._wb_lo, self._wb_hi - self._wb_lo)
        _sync_file_range(self.fd, window[0], window[1], _SYNC_FILE_RANGE_WRITE)
        if not self._wb_jumped:
            if self._wb_prev is not None:
                # Wait for the window before: bounds dirty pages at two windows.
                flags = _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE
                _sync_file_range(self.fd, self._wb_prev[0], self._wb_prev[1], flags)
            self._wb_prev = window
        self._wb_bytes = 0

    def _io_error(self, what: str, exc: OSError) -> BackendIOError | ReadOnlyTarget:
        if exc.errno in _READONLY_ERRNOS and what != "read":
            return ReadOnlyTarget(url=self.url, detail=exc.strerror or str(exc))
        return BackendIOError(what=what, url=self.url, detail=exc.strerror or str(exc))


# -- VMDK descriptors -------------------------------------------------------
#
# VMDK files the file backend can open: flat extents and the text descriptors
# that name them.
#
# A ``-flat.vmdk`` holds the disk's bytes with no header, so it opens as raw.
# A monolithicFlat (or ESXi ``vmfs``) *descriptor* is a small text file::
#
#     # Disk DescriptorFile
#     version=1
#     CID=fffffffe
#     parentCID=ffffffff
#     createType="monolithicFlat"
#     RW 2097152 FLAT "disk-flat.vmdk" 0
#
# vmdr opens the one extent it names, relative to the descriptor's folder, and
# refuses what it cannot write safely: several extents, sparse or delta
# (snapshot child) disks, and extent paths that are absolute or leave the
# folder (a descriptor must not make vmdr write elsewhere).

DESCRIPTOR_MAGIC = b"# Disk DescriptorFile"
SPARSE_MAGIC = b"KDMV"  # monolithicSparse / streamOptimized header
MAX_DESCRIPTOR = 64 << 10
SECTOR = 512

_FLAT_TYPES = {"monolithicflat", "vmfs"}
_EXTENT_RE = re.compile(
    r"^(?P<access>RW|RDONLY|NOACCESS)\s+(?P<sectors>\d+)\s+(?P<type>[A-Z]+)"
    r'(?:\s+"(?P<name>[^"]*)"(?:\s+(?P<offset>\d+))?)?\s*$'
)
_KEY_RE = re.compile(r'^(?P<key>[A-Za-z.]+)\s*=\s*"?(?P<value>[^"]*)"?\s*$')


@dataclass(frozen=True, slots=True)
class FlatExtent:
    """The flat extent a descriptor names: its path, size and access."""

    path: str
    size: int
    writable: bool


def sniff(head: bytes) -> str:
    """What the first bytes of a file say it is: descriptor, sparse or raw."""
    if head.startswith(DESCRIPTOR_MAGIC):
        return "descriptor"
    if head.startswith(SPARSE_MAGIC):
        return "sparse"
    return "raw"


def parse_descriptor(path: str, text: str) -> FlatExtent:
    """Parse a monolithicFlat descriptor read from ``path``."""

    def bad(detail: str) -> BadDescriptor:
        return BadDescriptor(path=path, detail=detail)

    keys: dict[str, str] = {}
    extents: list[re.Match[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if m := _EXTENT_RE.match(line):
            extents.append(m)
        elif m := _KEY_RE.match(line):
            keys[m["key"].lower()] = m["value"]
    create_type = keys.get("createtype", "")
    if create_type.lower() not in _FLAT_TYPES:
        raise bad(f"createType {create_type!r} is not monolithicFlat or vmfs")
    if keys.get("parentcid", "ffffffff").lower() != "ffffffff":
        raise bad("it is a delta disk with a parent (consolidate snapshots first)")
    if len(extents) != 1:
        raise bad(f"it has {len(extents)} extents; vmdr opens exactly one")
    ext = extents[0]
    if ext["type"] not in ("FLAT", "VMFS"):
        raise bad(f"extent type {ext['type']} is not FLAT or VMFS")
    if int(ext["offset"] or 0) != 0:
        raise bad("the extent does not start at offset 0 of its file")
    name = ext["name"] or ""
    norm = os.path.normpath(name)
    if not name or os.path.isabs(name) or norm == ".." or norm.startswith(".." + os.sep):
        raise bad(f"extent path {name!r} is not a file inside the descriptor's folder")
    folder = os.path.dirname(os.path.abspath(path))
    return FlatExtent(
        path=os.path.join(folder, norm),
        size=int(ext["sectors"]) * SECTOR,
        writable=ext["access"] == "RW",
    )


def read_descriptor(path: str, fd: int) -> FlatExtent:
    """Read and parse the descriptor open at ``fd``."""
    data = os.pread(fd, MAX_DESCRIPTOR + 1, 0)
    if len(data) > MAX_DESCRIPTOR:
        raise BadDescriptor(path=path, detail="it is larger than a descriptor can be")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadDescriptor(path=path, detail="it is not text") from exc
    return parse_descriptor(path, text)


def _open_fd(url: str, path: str, mode: Mode, create: bool) -> int:
    flags = (os.O_RDWR if mode == "rw" else os.O_RDONLY) | os.O_CLOEXEC
    if create and mode == "rw":
        flags |= os.O_CREAT
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError as exc:
        raise DiskNotFound(url=url) from exc
    except IsADirectoryError as exc:
        raise BadURL(url=url, detail="it is a directory") from exc
    except OSError as exc:
        if exc.errno in _READONLY_ERRNOS and mode == "rw":
            raise ReadOnlyTarget(url=url, detail=exc.strerror or str(exc)) from exc
        raise BackendIOError(what="open", url=url, detail=exc.strerror or str(exc)) from exc


def open_url(url: str, mode: Mode, create: bool) -> FileBackend:
    path = path_of(url)
    fd = _open_fd(url, path, mode, create)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise BadURL(url=url, detail="it is a directory")
        kind = "raw"
        if stat.S_ISREG(st.st_mode) and 0 < st.st_size <= MAX_DESCRIPTOR:
            kind = sniff(os.pread(fd, len(DESCRIPTOR_MAGIC), 0))
        if kind == "sparse":
            raise BadDescriptor(path=path, detail="sparse VMDKs are not supported")
        if kind == "raw":
            return FileBackend(url, mode, fd)
        extent = read_descriptor(path, fd)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return _open_extent(url, path, extent, mode)


def _open_extent(url: str, path: str, extent: FlatExtent, mode: Mode) -> FileBackend:
    if mode == "rw" and not extent.writable:
        raise ReadOnlyTarget(url=url, detail="the descriptor opens its extent read-only")
    fd = _open_fd(extent.path, extent.path, mode, create=False)
    actual = os.fstat(fd).st_size
    if actual < extent.size:
        os.close(fd)
        raise BadDescriptor(
            path=path, detail=f"extent holds {actual} bytes, the descriptor says {extent.size}"
        )
    return FileBackend(url, mode, fd, fixed_size=extent.size)
