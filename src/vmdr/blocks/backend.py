"""The one io-like interface every disk has.

A backend is a random-access disk of a fixed size (``resize`` changes it).
Offsets are explicit on every call, so one backend can serve several readers
in turn without a shared file position. The interface follows ovirt-imageio:

    size() -> int
    readinto(offset, buf) -> int        fills all of buf (must lie inside the disk)
    write(offset, buf) -> int           writes all of buf (must lie inside the disk)
    zero(offset, length)                makes the range read as zeros, cheaply if it can
    flush()                             durable on return
    extents(context="zero")             Extent values covering the disk, in order
    map_read(offset, length)            the bytes without a copy (``mappable`` only)
    resize(size)                        grow or shrink (not every backend)
    close(), context manager

Each backend also advertises what a remote store imposes:
``block_alignment`` (an Azure page blob takes 512-byte aligned writes),
``max_write`` (4 MiB per Put Page) and ``shareable`` (another process can open
the same ``url`` and see the same bytes, so hashing can move to a worker)
and ``mappable`` (``map_read`` lends the bytes without copying them: a file
is mapped into memory; only worker processes use it, see ``parallel``).

Opening a backend by URL is ``vmdr.blocks.urls``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Literal

from vmdr.blocks.errors import Misaligned, OutOfRange, ReadOnlyTarget, Unsupported
from vmdr.blocks.extent import Extent

__all__ = [
    "Backend",
    "Mode",
    "ReadableBuffer",
    "WritableBuffer",
]

Mode = Literal["r", "rw"]
ReadableBuffer = bytes | bytearray | memoryview
WritableBuffer = bytearray | memoryview

# scheme -> module holding ``open_url``; imported on first use.


class Backend(abc.ABC):
    """A disk. Subclasses implement the abstract methods; the checks here keep
    every backend's contract identical (the conformance suite tests it)."""

    block_alignment: int = 1
    max_write: int = 64 << 20
    shareable: bool = False
    mappable: bool = False
    # How much one read should ask for at least: a remote store pays a round
    # trip per request, so the page blob asks for 4 MiB where a file takes 1 MiB.
    preferred_read: int = 0

    def __init__(self, url: str, mode: Mode) -> None:
        self.url = url
        self.mode: Mode = mode
        self.closed = False

    @abc.abstractmethod
    def size(self) -> int: ...

    @abc.abstractmethod
    def readinto(self, offset: int, buf: WritableBuffer) -> int: ...

    @abc.abstractmethod
    def write(self, offset: int, buf: ReadableBuffer) -> int: ...

    @abc.abstractmethod
    def zero(self, offset: int, length: int) -> None: ...

    @abc.abstractmethod
    def flush(self) -> None: ...

    @abc.abstractmethod
    def extents(self, context: str = "zero") -> Iterator[Extent]: ...

    def map_read(self, offset: int, length: int) -> AbstractContextManager[memoryview]:
        """A read-only view of ``[offset, offset+length)`` without a copy, valid
        inside the ``with``. Only where ``mappable``."""
        raise Unsupported(what="map_read", url=self.url, hint="Read with readinto().")

    def resize(self, size: int) -> None:
        raise Unsupported(what="resize", url=self.url, hint="Create the target at the right size.")

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url!r} mode={self.mode}>"

    # -- checks shared by all backends ------------------------------------

    def _check_range(self, what: str, offset: int, length: int, size: int) -> None:
        if offset < 0 or length < 0 or offset + length > size:
            raise OutOfRange(what=what, offset=offset, length=length, size=size, url=self.url)
        align = self.block_alignment
        if align > 1 and (offset % align or (length % align and offset + length != size)):
            raise Misaligned(what=what, offset=offset, length=length, alignment=align, url=self.url)

    def _check_writable(self) -> None:
        if self.mode != "rw":
            raise ReadOnlyTarget(url=self.url, detail="opened read-only")

    def _check_context(self, context: str) -> None:
        if context != "zero":
            raise Unsupported(
                what=f"extents(context={context!r})",
                url=self.url,
                hint="Give DirtyCopy a dirty map from change tracking instead.",
            )
