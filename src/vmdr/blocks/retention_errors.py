"""Errors of the retention journal (area 04).

VmdrError
└── RetentionError          VMDR-E0400
    ├── RetentionMissing    VMDR-E0401
    ├── RetentionFull       VMDR-E0402
    ├── NoRecoveryPoint     VMDR-E0403
    ├── PointExpired        VMDR-E0404
    ├── JournalCorrupt      VMDR-E0405
    └── BadDiskId           VMDR-E0406
"""

from __future__ import annotations

from vmdr.model.errors import VmdrError

__all__ = [
    "BadDiskId",
    "JournalCorrupt",
    "NoRecoveryPoint",
    "PointExpired",
    "RetentionError",
    "RetentionFull",
    "RetentionMissing",
]


class RetentionError(VmdrError):
    code = "VMDR-E0400"
    msg = "{detail}"


class RetentionMissing(RetentionError):
    code = "VMDR-E0401"
    http_status = 503
    msg = "the retention drive {path} is missing, not a folder, or not writable"
    fix = (
        "Add a disk to the master target, format and mount it, and point --retention-dir at a "
        "writable folder on it; replication starts only with a retention drive."
    )


class RetentionFull(RetentionError):
    code = "VMDR-E0402"
    http_status = 507
    msg = "the retention drive {path} is full: {detail}"
    fix = (
        "Give the retention drive more space, raise --retention-quota, or shorten "
        "--retention-hours; replication resumes by itself once there is room."
    )


class NoRecoveryPoint(RetentionError):
    code = "VMDR-E0403"
    http_status = 404
    msg = "disk {disk!r} has no recovery point matching {spec!r}"
    fix = "List the points (GET /v1/disks/{disk}/points) and pick one that exists."


class PointExpired(RetentionError):
    code = "VMDR-E0404"
    http_status = 410
    msg = "disk {disk!r}: time {when} is older than the {hours:g} h retention window"
    fix = "Choose a time inside the retention window, or keep a longer window."


class JournalCorrupt(RetentionError):
    code = "VMDR-E0405"
    http_status = 500
    msg = "the retention journal of disk {disk!r} is inconsistent: {detail}"
    fix = "Recover to the latest point (always possible) and resynchronise the disk."


class BadDiskId(RetentionError):
    code = "VMDR-E0406"
    http_status = 400
    msg = "{disk!r} is not a valid disk id"
    fix = "Use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit."
