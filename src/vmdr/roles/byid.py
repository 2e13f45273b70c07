"""Finding a VMDK attached to an appliance VM, by its UUID, as Linux names it.

On a real site the master target (and the on-premises process server) is a
Linux VM; the configuration server attaches the disks it must write (or
read) to that VM through vCenter. With ``disk.enableUUID=TRUE`` on the VM,
ESX hands each virtual SCSI disk's VMDK UUID to the guest as the disk's
identifier (VPD page 0x83, an NAA type 6 designator, and the page 0x80
serial), and udev names it after it under ``/dev/disk/by-id``. For the
VMDK whose ``backing.uuid`` is ``6000C29d-e45f-8a3b-9c1d-2e3f4a5b6c7d``:

=============================================================  ==============================
``wwn-0x6000c29de45f8a3b9c1d2e3f4a5b6c7d``                       the NAA identifier (every udev)
``scsi-36000c29de45f8a3b9c1d2e3f4a5b6c7d``                       ``scsi_id`` of page 0x83: type
                                                               ``3`` (NAA) + the identifier
``scsi-SVMware_Virtual_disk_6000c29de45f8a3b9c1d2e3f4a5b6c7d``  ``scsi_id`` of page 0x80 (vendor,
                                                               model, serial), older distributions
=============================================================  ==============================

each a symlink to the kernel's device (``../../sdb``); ``…-part1`` names
are its partitions, never the disk. Without ``disk.enableUUID`` the guest
sees no identifier and none of these names exist: the seed's rule that the
master target have it, "so that the VMDK mounts correctly". SATA and NVMe
virtual disks are named otherwise and are not used for appliance disks.

The lab keeps one such folder per appliance VM with the same names pointing
at its disk files; production code reads ``/dev/disk/by-id`` with the same
resolver, only the folder differs.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from vmdr.model.errors import VmdrError
from vmdr.model.vmdk_uuid import uuid_dashed, uuid_hex

__all__ = [
    "BY_ID",
    "DeviceAmbiguous",
    "DeviceFolder",
    "DeviceNotFound",
    "by_id_names",
    "uuid_dashed",
    "uuid_hex",
    "uuid_of_name",
]

BY_ID = Path("/dev/disk/by-id")
_NAME = re.compile(
    r"^(?:wwn-0x(?P<wwn>[0-9a-f]{32})|scsi-3(?P<naa>[0-9a-f]{32})"
    r"|scsi-SVMware_Virtual_disk_(?P<serial>[0-9a-f]{32}))$",
    re.IGNORECASE,  # the serial's case is the device's; the hex is the same
)


class DeviceNotFound(VmdrError):
    code = "VMDR-E0426"
    http_status = 409
    msg = "no disk with VMDK UUID {uuid} appeared in {folder} within {seconds:g} s"
    fix = (
        "Check in vCenter that the disk is attached to this appliance VM and that the VM "
        "has disk.enableUUID=TRUE (without it Linux sees no UUID); then run the job again."
    )


class DeviceAmbiguous(VmdrError):
    code = "VMDR-E0427"
    http_status = 409
    msg = "VMDK UUID {uuid} names {count} different devices in {folder}: {devices}"
    fix = (
        "Two attached disks carry the same UUID (a copied VMDK): detach the one that does "
        "not belong to this job, or give it a new UUID, and run the job again."
    )


def by_id_names(vmdk_uuid: str) -> list[str]:
    """Every name udev may give the disk of ``vmdk_uuid`` under by-id."""
    hex_ = uuid_hex(vmdk_uuid)
    return [f"wwn-0x{hex_}", f"scsi-3{hex_}", f"scsi-SVMware_Virtual_disk_{hex_}"]


def uuid_of_name(name: str) -> str | None:
    """The VMDK UUID (hex) a by-id entry names, or None (a partition, another
    kind of device, another vendor's disk)."""
    found = _NAME.match(name)
    if found is None:
        return None
    return str(found["wwn"] or found["naa"] or found["serial"]).lower()


class DeviceFolder:
    """A by-id folder: ``/dev/disk/by-id`` on an appliance, the lab's own
    folder per appliance VM in the lab."""

    def __init__(self, folder: Path = BY_ID) -> None:
        self.folder = folder

    def devices(self, vmdk_uuid: str) -> set[Path]:
        """The devices the UUID's names lead to now (normally one)."""
        wanted = uuid_hex(vmdk_uuid)
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return set()
        found = set()
        for entry in entries:
            if uuid_of_name(entry.name) == wanted:
                target = Path(os.path.realpath(entry.path))
                if target.exists():  # a dangling link is a disk being detached
                    found.add(target)
        return found

    def find(self, vmdk_uuid: str, wait: float = 0.0, poll: float = 0.2) -> Path:
        """The one device of ``vmdk_uuid``, waiting up to ``wait`` seconds for
        it to appear (udev names a hot-added disk a moment after the attach)."""
        deadline = time.monotonic() + wait
        while True:
            found = self.devices(vmdk_uuid)
            if len(found) > 1:
                raise DeviceAmbiguous(uuid=vmdk_uuid, count=len(found), folder=str(self.folder),
                                      devices=", ".join(sorted(map(str, found))))  # fmt: skip
            if found:
                return found.pop()
            if time.monotonic() >= deadline:
                raise DeviceNotFound(uuid=vmdk_uuid, folder=str(self.folder), seconds=wait)
            time.sleep(poll)
