"""Where a master target may write: its datastore roots, and nothing else.

A request names a disk as a datastore and a path inside it, either as two
fields or in vSphere's own notation ``[vmfs-01] web-01/web-01-flat.vmdk``.
The path is checked twice:

1. by name, before anything touches the disk: relative, no ``..`` or empty
   parts, only ordinary file-name characters, ending in ``.vmdk``, ``.img``
   or ``.raw``, and inside the root once symlinks are resolved;
2. by what was opened: the file behind the open descriptor
   (``/proc/self/fd``) must lie inside the root — so neither a symlink swapped
   in after step 1 nor a VMDK descriptor whose extent points elsewhere can
   make the master target write outside its datastores.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from vmdr.blocks.backend import Backend
from vmdr.blocks.urls import open_backend
from vmdr.model.errors import VmdrError

__all__ = ["DatastorePath", "DatastoreRoots", "PathRefused", "UnknownDatastore"]

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._()+-]{0,127}$")
_SUFFIXES = (".vmdk", ".img", ".raw")
_VSPHERE = re.compile(r"^\[(?P<ds>[^\]]+)\]\s*(?P<path>.*)$")


class PathRefused(VmdrError):
    code = "VMDR-E0420"
    http_status = 403
    msg = "refused disk path {path!r} on datastore {datastore!r}: {detail}"
    fix = (
        "Name a disk inside one of this master target's datastores with a relative path of "
        "ordinary names ending in .vmdk, .img or .raw (configured roots: {roots})."
    )


class UnknownDatastore(VmdrError):
    code = "VMDR-E0421"
    http_status = 404
    msg = "datastore {datastore!r} is not one this master target may write to"
    fix = "Use one of {roots}, or add it with `--datastore NAME=PATH`."


@dataclass(frozen=True)
class DatastorePath:
    datastore: str
    path: str  # relative, as requested
    file: Path  # absolute, resolved

    @property
    def url(self) -> str:
        return f"file://{self.file}"

    def __str__(self) -> str:
        return f"[{self.datastore}] {self.path}"


class DatastoreRoots:
    """Named folders a master target may write disks into."""

    def __init__(self, roots: dict[str, Path]) -> None:
        self.roots = {name: Path(os.path.realpath(p)) for name, p in roots.items()}

    def names(self) -> list[str]:
        return sorted(self.roots)

    @classmethod
    def parse(cls, specs: list[str]) -> DatastoreRoots:
        """From ``NAME=PATH`` strings (flags or config)."""
        roots: dict[str, Path] = {}
        for spec in specs:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise PathRefused(
                    path=spec, datastore="?", detail="expected NAME=PATH", roots=sorted(roots)
                )
            roots[name] = Path(path)
        return cls(roots)

    def resolve(self, datastore: str | None, path: str) -> DatastorePath:
        """Check a requested disk path by name (step 1 above)."""
        match = _VSPHERE.match(path)
        if match:
            if datastore and datastore != match["ds"]:
                self._refuse(path, datastore, "the path names another datastore")
            datastore, path = match["ds"], match["path"]
        if not datastore or datastore not in self.roots:
            raise UnknownDatastore(datastore=datastore or "", roots=self.names())
        root = self.roots[datastore]
        parts = path.split("/")
        if path.startswith("/") or not all(_PART.match(p) for p in parts):
            self._refuse(path, datastore, "it is not a relative path of ordinary names")
        if any(p in (".", "..") for p in parts):
            self._refuse(path, datastore, "it climbs out of the datastore")
        if not path.endswith(_SUFFIXES):
            self._refuse(path, datastore, "a disk file ends in .vmdk, .img or .raw")
        resolved = Path(os.path.realpath(root / path))
        if not resolved.is_relative_to(root):
            self._refuse(path, datastore, "it leads outside the datastore (a symlink?)")
        return DatastorePath(datastore, path, resolved)

    def open(self, where: DatastorePath, *, size: int | None = None) -> Backend:
        """Open (or, given ``size``, create) the disk for writing, then check
        what was really opened (step 2 above)."""
        if size is not None and not where.file.exists():
            where.file.parent.mkdir(parents=True, exist_ok=True)
            # Create parents first, then check again: a parent could be a symlink.
            self.resolve(where.datastore, where.path)
            fd = os.open(where.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.ftruncate(fd, size)
            finally:
                os.close(fd)
        backend = open_backend(where.url, "rw")
        try:
            self.check_open(backend, where)
        except BaseException:
            backend.close()
            raise
        return backend

    def check_open(self, backend: Backend, where: DatastorePath) -> None:
        fd = getattr(backend, "fd", None)
        if fd is None:
            return
        real = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if not real.is_relative_to(self.roots[where.datastore]):
            self._refuse(where.path, where.datastore, f"it opens {real}, outside the datastore")

    def _refuse(self, path: str, datastore: str, detail: str) -> None:
        raise PathRefused(path=path, datastore=datastore, detail=detail, roots=self.names())
