"""The lab's guest writes: what an application inside an on-premises lab VM
writes to its disk, and what ESX's changed block tracking records of it.

On a real site every write a guest issues passes through ESX, which notes
the changed area in the disk's ``-ctk.vmdk`` while the VM tracks changes.
The lab's VMs have no guest, so their "application" is whoever calls
``write``: the bytes go to the disk's ``-flat.vmdk`` extent and then, when
the VM tracks changes, ``offset length`` is appended to the disk's change
log (``<disk>-ctk.log``, kept by the lab's vCenter simulator, see
``tools/vcsim/cbt.go``). Recorded after the write: a snapshot taken between
the two sees the data and the next cycle copies it again, never the reverse.

A write made to the extent any other way is not tracked, as a write made
behind ESX's back is not; the next differential resync still finds it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["change_log", "write"]

CTK_SUFFIX = "-ctk.log"


def change_log(flat: Path) -> Path:
    """``disk-flat.vmdk`` → ``disk-ctk.log``."""
    name = flat.name.removesuffix("-flat.vmdk").removesuffix(".vmdk")
    return flat.with_name(name + CTK_SUFFIX)


def write(flat: Path | str, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` of a lab VM's disk extent, durably, and
    record the change if the disk is tracked."""
    flat = Path(flat)
    if offset < 0 or not data:
        raise ValueError("a guest write needs an offset ≥ 0 and some bytes")
    fd = os.open(flat, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    log = change_log(flat)
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    except FileNotFoundError:
        return  # the VM does not track changes
    try:
        os.write(fd, f"{offset} {len(data)}\n".encode())  # one append: whole lines
    finally:
        os.close(fd)
