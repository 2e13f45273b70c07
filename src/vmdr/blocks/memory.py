"""The ``memory:`` backend: the reference implementation of the backend
contract and the fake for unit tests.

Storage is sparse: 64 KiB chunks in a dict, a missing chunk reads as zeros
and is reported as a zero extent, so a 1 TiB memory disk costs nothing until
written. ``zero`` drops whole chunks, like punching a hole.

URL forms (all disks live in this process only, so ``shareable`` is False):

    memory:                      a new anonymous disk of size 0
    memory:?size=N               a new anonymous disk of N bytes
    memory:NAME                  the named disk; must exist (or open with create=True)
    memory:NAME?size=N           the named disk, made with N zero bytes if missing;
                                 if it exists its size must be N
    ...&align=A&max_write=M      advertise a block_alignment and max_write, so
                                 tests can play a page blob (align=512, max_write=4M)

``memory://NAME`` is the same as ``memory:NAME``. ``delete(name)`` forgets a
named disk.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from urllib.parse import parse_qs

from vmdr.blocks.backend import Backend, Mode, ReadableBuffer, WritableBuffer
from vmdr.blocks.errors import BadURL, DiskNotFound
from vmdr.blocks.extent import Extent

__all__ = ["CHUNK", "MemoryBackend", "delete", "open_url"]

CHUNK = 64 << 10


class _Store:
    """The bytes of one memory disk."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.chunks: dict[int, bytearray] = {}


_named: dict[str, _Store] = {}
_lock = threading.Lock()


class MemoryBackend(Backend):
    def __init__(
        self, url: str, mode: Mode, store: _Store, *, align: int = 1, max_write: int = 64 << 20
    ) -> None:
        super().__init__(url, mode)
        self._store = store
        self.block_alignment = align
        self.max_write = max_write

    def size(self) -> int:
        return self._store.size

    def readinto(self, offset: int, buf: WritableBuffer) -> int:
        view = memoryview(buf).cast("B")
        self._check_range("read", offset, len(view), self._store.size)
        for pos, index, lo, hi in self._pieces(offset, len(view)):
            chunk = self._store.chunks.get(index)
            if chunk is None:
                view[pos : pos + hi - lo] = bytes(hi - lo)
            else:
                view[pos : pos + hi - lo] = chunk[lo:hi]
        return len(view)

    def write(self, offset: int, buf: ReadableBuffer) -> int:
        self._check_writable()
        view = memoryview(buf).cast("B")
        self._check_range("write", offset, len(view), self._store.size)
        chunks = self._store.chunks
        for pos, index, lo, hi in self._pieces(offset, len(view)):
            chunk = chunks.get(index)
            if chunk is None:
                chunk = chunks[index] = bytearray(CHUNK)
            chunk[lo:hi] = view[pos : pos + hi - lo]
        return len(view)

    def zero(self, offset: int, length: int) -> None:
        self._check_writable()
        self._check_range("zero", offset, length, self._store.size)
        chunks = self._store.chunks
        size = self._store.size
        for _pos, index, lo, hi in self._pieces(offset, length):
            if lo == 0 and (hi == CHUNK or index * CHUNK + hi >= size):
                chunks.pop(index, None)
            elif (chunk := chunks.get(index)) is not None:
                chunk[lo:hi] = bytes(hi - lo)

    def flush(self) -> None:
        pass

    def extents(self, context: str = "zero") -> Iterator[Extent]:
        self._check_context(context)
        size = self._store.size
        pos = 0  # end of what was reported
        data_start = -1  # start of the data extent being built
        for index in sorted(self._store.chunks):
            start = index * CHUNK
            if start >= size:
                break
            if data_start >= 0 and start != pos:
                yield Extent(data_start, pos - data_start, zero=False)
                data_start = -1
            if start > pos:
                yield Extent(pos, start - pos, zero=True)
            if data_start < 0:
                data_start = start
            pos = min(start + CHUNK, size)
        if data_start >= 0:
            yield Extent(data_start, pos - data_start, zero=False)
        if pos < size:
            yield Extent(pos, size - pos, zero=True)

    def resize(self, size: int) -> None:
        self._check_writable()
        if size < 0:
            raise ValueError("negative size")
        store = self._store
        last = -(-size // CHUNK)
        for index in [i for i in store.chunks if i >= last]:
            del store.chunks[index]
        if size % CHUNK and (chunk := store.chunks.get(size // CHUNK)) is not None:
            chunk[size % CHUNK :] = bytes(CHUNK - size % CHUNK)
        store.size = size

    def close(self) -> None:
        self.closed = True

    @staticmethod
    def _pieces(offset: int, length: int) -> Iterator[tuple[int, int, int, int]]:
        """``(position in request, chunk index, start in chunk, end in chunk)``."""
        pos = 0
        while pos < length:
            index, lo = divmod(offset + pos, CHUNK)
            hi = min(CHUNK, lo + length - pos)
            yield pos, index, lo, hi
            pos += hi - lo


def _int_param(url: str, params: dict[str, list[str]], key: str, default: int) -> int:
    if key not in params:
        return default
    try:
        value = int(params[key][-1])
    except ValueError:
        raise BadURL(url=url, detail=f"{key} must be an integer") from None
    if value < 0:
        raise BadURL(url=url, detail=f"{key} must not be negative")
    return value


def open_url(url: str, mode: Mode, create: bool) -> MemoryBackend:
    rest = url.split(":", 1)[1]
    rest = rest.removeprefix("//")
    name, _, query = rest.partition("?")
    params = parse_qs(query, keep_blank_values=True)
    unknown = set(params) - {"size", "align", "max_write"}
    if unknown:
        raise BadURL(url=url, detail=f"unknown parameter(s) {', '.join(sorted(unknown))}")
    size = _int_param(url, params, "size", -1)
    align = _int_param(url, params, "align", 1)
    max_write = _int_param(url, params, "max_write", 64 << 20)
    if align < 1 or align & (align - 1):
        raise BadURL(url=url, detail="align must be a power of two")
    if max_write < max(align, 1):
        raise BadURL(url=url, detail="max_write must be at least align")
    if not name:
        store = _Store(max(size, 0))
    else:
        with _lock:
            store_or_none = _named.get(name)
            if store_or_none is None:
                if size < 0 and not create:
                    raise DiskNotFound(url=url)
                store_or_none = _named[name] = _Store(max(size, 0))
            elif size >= 0 and store_or_none.size != size:
                detail = f"disk {name!r} exists with {store_or_none.size} bytes, not {size}"
                raise BadURL(url=url, detail=detail)
            store = store_or_none
    return MemoryBackend(url, mode, store, align=align, max_write=max_write)


def delete(name: str) -> None:
    """Forget the named memory disk (no error if there is none)."""
    with _lock:
        _named.pop(name, None)
