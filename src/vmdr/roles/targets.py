"""Where a master target writes a disk: a VMDK that the configuration server
attached to the master target's VM, found by its UUID under by-id
(``roles.byid``), or a file in one of its datastore folders
(``roles.datastores``; the failback drill's scratch disks).

An attached disk is looked up again each time it is opened: after a detach
and attach it may be another device (``sdc`` instead of ``sdb``), and a
device that is gone is an error with its fix, never a file created in its
place. After the open, the UUID is looked up once more and the opened
descriptor must be that device (same device number; in the lab, the same
file), so a disk swapped in between the look-up and the open is refused.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from vmdr.blocks.backend import Backend
from vmdr.blocks.errors import TargetTooLarge
from vmdr.blocks.operation import prepare_target
from vmdr.blocks.urls import open_backend
from vmdr.model.errors import VmdrError
from vmdr.roles.byid import DeviceFolder, uuid_dashed
from vmdr.roles.contracts import TargetFields
from vmdr.roles.datastores import DatastorePath, DatastoreRoots

__all__ = ["AttachedDisk", "DeviceTooSmall", "Targets", "Where"]


class DeviceTooSmall(VmdrError):
    code = "VMDR-E0428"
    http_status = 409
    msg = "the attached disk {uuid} holds {size} bytes, the source disk {source_size}"
    fix = (
        "A device cannot grow from inside the appliance: extend the VMDK in vCenter to at "
        "least the source's size (or let reprotect create a new VM, ALR), then run it again."
    )


class DeviceChanged(VmdrError):
    code = "VMDR-E0429"
    http_status = 409
    msg = "the attached disk {uuid} changed while it was opened ({opened}; it names {named} now)"
    fix = "Something renamed the appliance's devices under it; run the job again."


@dataclass(frozen=True)
class AttachedDisk:
    """A disk attached to this appliance's VM, named by its VMDK UUID
    (``uuid_dashed`` form)."""

    uuid: str

    def __str__(self) -> str:
        return f"attached disk {self.uuid}"


Where = DatastorePath | AttachedDisk


class Targets:
    """Resolves, opens and records the disks a master target writes."""

    def __init__(self, datastores: DatastoreRoots, devices: DeviceFolder, wait: float) -> None:
        self.datastores, self.devices, self.wait = datastores, devices, wait

    def resolve(self, spec: BaseModel | dict[str, Any]) -> Where:
        """A request's target (or a stored record's), checked by name."""
        data = spec.model_dump() if isinstance(spec, BaseModel) else spec
        if data.get("device") is not None:
            return AttachedDisk(uuid_dashed(str(data["device"])))
        return self.datastores.resolve(data.get("datastore"), str(data["path"]))

    @staticmethod
    def record(where: Where) -> dict[str, Any]:
        """How the target is stored and shown."""
        if isinstance(where, AttachedDisk):
            return {"device": where.uuid}
        return {"datastore": where.datastore, "path": where.path}

    @staticmethod
    def names(target: Where | TargetFields) -> dict[str, Any]:
        """What a target is called, without looking at any disk: a stored
        target and a request compare equal when they name the same one."""
        if isinstance(target, AttachedDisk | DatastorePath):
            return Targets.record(target)
        named = target.target_names()
        if named.get("device") is not None:
            named["device"] = uuid_dashed(str(named["device"]))
        return named

    def wait_for(self, where: Where) -> None:
        """Wait (up to the configured time) until an attached disk appears."""
        if isinstance(where, AttachedDisk):
            self.devices.find(where.uuid, wait=self.wait)

    @staticmethod
    def same(a: Where, b: Where) -> bool:
        """The same disk: the same attached UUID, or the same file."""
        if isinstance(a, AttachedDisk) or isinstance(b, AttachedDisk):
            return a == b
        return a.file == b.file

    def open(self, where: Where, *, size: int | None = None) -> Backend:
        """Open the disk for writing. A file is created with ``size`` if
        missing; an attached disk must be there (waited for a while: udev
        names a hot-added disk a moment after the attach)."""
        if isinstance(where, DatastorePath):
            return self.datastores.open(where, size=size)
        device = self.devices.find(where.uuid, wait=self.wait)
        backend = open_backend(f"file://{device}", "rw")
        try:
            # What was opened must be what the UUID names now: a disk
            # detached and another attached between look-up and open would
            # otherwise be written in its place.
            fd = getattr(backend, "fd", None)
            opened = os.fstat(fd) if fd is not None else os.stat(device)
            now = self.devices.devices(where.uuid)
            if len(now) != 1 or not _same_device(opened, os.stat(next(iter(now)))):
                named = ", ".join(sorted(map(str, now))) or "nothing"
                raise DeviceChanged(uuid=where.uuid, opened=str(device), named=named)
        except BaseException:
            backend.close()
            raise
        return backend

    def prepare(self, where: Where, size: int | None, create: bool) -> None:
        """Make the disk ready for a source of ``size`` bytes (when known):
        a file grows to it; a device must already hold it."""
        with self.open_sized(where, size, create):
            pass

    def open_sized(self, where: Where, size: int | None, create: bool) -> Backend:
        """``open``, the disk made ``size`` bytes (when known): a file is
        created or grown to it; a device must hold exactly that."""
        backend = self.open(where, size=size if create else None)
        try:
            if size is not None:
                current = backend.size()
                if isinstance(where, AttachedDisk) and current < size:
                    raise DeviceTooSmall(uuid=where.uuid, size=current, source_size=size)
                if current > size:
                    raise TargetTooLarge(url=backend.url, target_size=current, source_size=size)
                prepare_target(backend, size)
        except BaseException:
            backend.close()
            raise
        return backend

    def size(self, where: Where) -> int | None:
        """The disk's size now, or None if it is not there."""
        if isinstance(where, DatastorePath):
            return where.file.stat().st_size if where.file.exists() else None
        found = self.devices.devices(where.uuid)
        if len(found) != 1:
            return None
        fd = os.open(found.pop(), os.O_RDONLY)
        try:
            return os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)


def _same_device(a: os.stat_result, b: os.stat_result) -> bool:
    """The same block device (its device number), or the same file."""
    if stat.S_ISBLK(a.st_mode) or stat.S_ISBLK(b.st_mode):
        return stat.S_ISBLK(a.st_mode) and stat.S_ISBLK(b.st_mode) and a.st_rdev == b.st_rdev
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
