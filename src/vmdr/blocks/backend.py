"""The one io-like interface every disk has, and opening disks by URL.

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

URLs: ``file:///abs/path``, ``file:rel/path`` or a plain path;
``memory:NAME?size=N&align=A`` (see ``vmdr.blocks.memory``). New schemes
register a module in ``SCHEMES``; its ``open_url(url, mode, create)`` builds the
backend.
"""

from __future__ import annotations

import abc
import importlib
import os
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Literal, Protocol

from vmdr.blocks.errors import Misaligned, OutOfRange, ReadOnlyTarget, UnknownScheme, Unsupported
from vmdr.blocks.extent import Extent

__all__ = [
    "SCHEMES",
    "Backend",
    "Mode",
    "ReadableBuffer",
    "WritableBuffer",
    "open_backend",
    "split_scheme",
]

Mode = Literal["r", "rw"]
ReadableBuffer = bytes | bytearray | memoryview
WritableBuffer = bytearray | memoryview

# scheme -> module holding ``open_url``; imported on first use.
SCHEMES: dict[str, str] = {
    "file": "vmdr.blocks.file",
    "memory": "vmdr.blocks.memory",
    # Providers register their backends by module name, imported only when used.
    "pageblob": "vmdr.providers.azure.pageblob",
}

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


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


class _Opener(Protocol):
    def __call__(self, url: str, mode: Mode, create: bool) -> Backend: ...


def split_scheme(url: str) -> tuple[str, str]:
    """``(scheme, url)``; a plain path is ``("file", path)``.

    A string that only looks like it has a scheme (``disk:1.img``) is taken as a
    path when no such scheme is known and the file exists, so such file names
    still work; otherwise an unknown scheme is an error, never a guess."""
    match = _SCHEME_RE.match(url)
    if match is None:
        return "file", url
    scheme = match.group(1).lower()
    if scheme in SCHEMES:
        return scheme, url
    if "://" not in url and os.path.exists(url):
        return "file", url
    raise UnknownScheme(url=url, scheme=scheme, known=", ".join(f"{s}:" for s in sorted(SCHEMES)))


def open_backend(url: str, mode: Mode = "r", *, create: bool = False) -> Backend:
    """Open the disk at ``url``. ``create`` makes a missing disk (empty, size 0;
    copy operations grow it to the source's size)."""
    if mode not in ("r", "rw"):
        raise ValueError(f"mode must be 'r' or 'rw', not {mode!r}")
    scheme, url = split_scheme(url)
    module = importlib.import_module(SCHEMES[scheme])
    opener: _Opener = module.open_url
    return opener(url, mode, create)
