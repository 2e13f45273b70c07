"""Errors of the Azure provider (area 07).

    VmdrError
    └── AzureError                      VMDR-E0700
        ├── StorageAccountUnknown       VMDR-E0701  (accounts.py)
        ├── DiskLeased                  VMDR-E0702  acquire refused: another writer holds the disk
        ├── WriteFenced                 VMDR-E0703  a write without the disk's lease was refused
        ├── LeaseNotHeld                VMDR-E0704  release with a lease that is not the disk's
        ├── ChangeTrackingUnavailable   VMDR-E0705  the service's page-range diff cannot be trusted
        ├── DirtyMapInvalid             VMDR-E0706  a dirty-map file is damaged or for another disk
        ├── DirtyMapBusy                VMDR-E0707  another process tracks the same disk
        ├── CloudVmNotFound             VMDR-E0710
        ├── CloudVmExists               VMDR-E0711
        ├── CloudVmState                VMDR-E0712  operation not allowed in the VM's power state
        ├── CloudComputeFailed          VMDR-E0713  the compute API refused or failed
        ├── VhdInvalid                  VMDR-E0720  not a fixed VHD (footer, checksum, size)
        └── VhdSizeNotAccepted          VMDR-E0721  virtual size not a whole number of MiB

Codes are stable. SDK exceptions (``azure.core.exceptions``) are translated
where they are caught, with ``raise ... from exc``.
"""

from __future__ import annotations

from vmdr.model.errors import VmdrError

__all__ = [
    "AzureProviderError",
    "ChangeTrackingUnavailable",
    "CloudComputeFailed",
    "CloudVmExists",
    "CloudVmNotFound",
    "CloudVmState",
    "DirtyMapBusy",
    "DirtyMapInvalid",
    "DiskLeased",
    "LeaseNotHeld",
    "VhdInvalid",
    "VhdSizeNotAccepted",
    "WriteFenced",
]


class AzureProviderError(VmdrError):
    code = "VMDR-E0700"
    msg = "{detail}"


class DiskLeased(AzureProviderError):
    code = "VMDR-E0702"
    msg = "disk {url!r} is already held by {holder} (infinite lease); a second writer is refused"
    fix = (
        "Only one site writes a disk. To take it over (failover, failback, reprotect) break "
        "the lease first (vmdr.providers.azure.fencing.break_), then acquire it."
    )


class WriteFenced(AzureProviderError):
    code = "VMDR-E0703"
    msg = "write to {url!r} refused: {reason}; the disk's writer is {holder}"
    fix = (
        "Stop writing from this site: the disk belongs to its lease holder (a failover, "
        "failback or reprotect took it over). Nothing was written by the refused request."
    )


class LeaseNotHeld(AzureProviderError):
    code = "VMDR-E0704"
    msg = "lease {lease_id!r} is not the lease of disk {url!r} ({detail})"
    fix = "The lease was broken or changed by a take-over; this site no longer owns the disk."


class ChangeTrackingUnavailable(AzureProviderError):
    code = "VMDR-E0705"
    msg = "changed ranges of {url!r} since snapshot {snapshot!r} are not available: {reason}"
    fix = (
        "Use vmdr's own dirty map (TrackedBackend) if the writes went through vmdr, "
        "else a differential resync (DiffResync), which compares block hashes on both sides."
    )


class DirtyMapInvalid(AzureProviderError):
    code = "VMDR-E0706"
    msg = "dirty map {path!r} cannot be used: {detail}"
    fix = (
        "The changes since the last sync are unknown: run a differential resync (DiffResync) "
        "and start a new dirty map after it (delete the file)."
    )


class DirtyMapBusy(AzureProviderError):
    code = "VMDR-E0707"
    msg = "dirty map {path!r} is in use by another process"
    fix = "Stop the writer that tracks this disk (e.g. stop the cloud VM) before taking its map."


class CloudVmNotFound(AzureProviderError):
    code = "VMDR-E0710"
    msg = "cloud VM {name!r} does not exist in {where}"
    fix = "Check the name; `create_from_disks` makes it."


class CloudVmExists(AzureProviderError):
    code = "VMDR-E0711"
    msg = "cloud VM {name!r} already exists in {where}"
    fix = "Delete it first, or use another name."


class CloudVmState(AzureProviderError):
    code = "VMDR-E0712"
    msg = "cannot {action} cloud VM {name!r}: it is {state}"
    fix = "{hint}"


class CloudComputeFailed(AzureProviderError):
    code = "VMDR-E0713"
    msg = "{action} of cloud VM {name!r} failed: {detail}"
    fix = "Read the detail (quota, permissions, region); the operation can be run again."


class CloudWritesUnknown(AzureProviderError):
    code = "VMDR-E0714"
    http_status = 409
    msg = "which blocks cloud VM {name!r} wrote to {disk} cannot be told in {where}"
    fix = (
        "An Azure VM writes its managed disks, not the replica blobs it was made from; "
        "reading them through incremental snapshots is not in this version "
        "(docs/azure.md). Fail back from the lab's compute, or copy the disks yourself."
    )


class VhdInvalid(AzureProviderError):
    code = "VMDR-E0720"
    msg = "{path!r} is not a fixed VHD vmdr can use: {detail}"
    fix = "Give a fixed VHD (512-byte 'conectix' footer at the end), e.g. made by `export_vhd`."


class VhdSizeNotAccepted(AzureProviderError):
    code = "VMDR-E0721"
    msg = "disk {url!r} has {size} bytes; Azure needs a virtual size that is a multiple of 1 MiB"
    fix = "Export with pad=True (adds zeros up to the next MiB) or grow the disk first."
