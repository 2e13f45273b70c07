"""A VMDK's UUID (``ddb.uuid``, ``backing.uuid``): parsed from any of the
forms vSphere and its tools print, shown in one, and made the way ESX makes
them. The master target finds a disk by it; vCenter reports it on attach."""

from __future__ import annotations

import re
import uuid

__all__ = ["new_vmdk_uuid", "uuid_dashed", "uuid_hex"]

_HEX32 = re.compile(r"^[0-9a-f]{32}$")


def uuid_hex(vmdk_uuid: str) -> str:
    """``6000C29d-e45f-…`` (as vSphere shows it, dashes or spaces anywhere)
    → the 32 lower-case hex digits udev uses."""
    digits = re.sub(r"[\s-]", "", vmdk_uuid).lower()
    if not _HEX32.match(digits):
        raise ValueError(f"{vmdk_uuid!r} is not a VMDK UUID (32 hex digits)")
    return digits


def uuid_dashed(vmdk_uuid: str) -> str:
    """The UUID in vSphere's 8-4-4-4-12 form, lower case: how vmdr shows it."""
    h = uuid_hex(vmdk_uuid)
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def new_vmdk_uuid() -> str:
    """A new disk UUID in the form ESX gives them (``6000c29x-…``)."""
    return uuid_dashed("6000c29" + uuid.uuid4().hex[7:])
