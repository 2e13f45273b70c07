"""Errors of the block engine (area 02).

    VmdrError
    └── BlocksError                 VMDR-E0200
        ├── UnknownScheme           VMDR-E0201  exit 2
        ├── BadURL                  VMDR-E0202  exit 2
        ├── DiskNotFound            VMDR-E0203
        ├── ReadOnlyTarget          VMDR-E0204
        ├── InvalidBlockSize        VMDR-E0205  exit 2
        ├── TargetTooLarge          VMDR-E0206
        ├── BadDescriptor           VMDR-E0207
        ├── OutOfRange              VMDR-E0208
        ├── Misaligned              VMDR-E0209
        ├── BackendIOError          VMDR-E0210
        ├── Unsupported             VMDR-E0211
        ├── StreamError             VMDR-E0212
        ├── OperationCancelled      VMDR-E0213  exit 130
        ├── WorkerFailed            VMDR-E0214
        └── DisksDiffer             VMDR-E0220  exit 4

Codes are stable: scripts and the REST API match on them. OS errors are
translated at the backend boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any

from vmdr.model.errors import VmdrError

__all__ = [
    "BackendIOError",
    "BadDescriptor",
    "BadURL",
    "BlocksError",
    "DiskNotFound",
    "DisksDiffer",
    "InvalidBlockSize",
    "Misaligned",
    "OperationCancelled",
    "OutOfRange",
    "ReadOnlyTarget",
    "StreamError",
    "TargetTooLarge",
    "UnknownScheme",
    "Unsupported",
    "WorkerFailed",
    "rebuild_error",
]


class BlocksError(VmdrError):
    code = "VMDR-E0200"
    msg = "{detail}"


class UnknownScheme(BlocksError):
    code = "VMDR-E0201"
    msg = "unknown disk URL scheme {scheme!r} in {url!r}"
    fix = "Use one of: {known}, or a plain file path."
    exit_code = 2


class BadURL(BlocksError):
    code = "VMDR-E0202"
    msg = "bad disk URL {url!r}: {detail}"
    fix = "See docs/blocks.md for the URL forms each backend accepts."
    exit_code = 2


class DiskNotFound(BlocksError):
    code = "VMDR-E0203"
    msg = "disk {url!r} does not exist"
    fix = "Check the path or name; `vmdr disk copy` creates a missing target, resync does not."


class ReadOnlyTarget(BlocksError):
    code = "VMDR-E0204"
    msg = "disk {url!r} cannot be written: {detail}"
    fix = "Give a writable target (check permissions, read-only mounts and immutable flags)."


class InvalidBlockSize(BlocksError):
    code = "VMDR-E0205"
    msg = "block size {block_size} is not a power of two between {low} and {high} bytes"
    fix = "Use a power of two such as 64K (the default) or 1M."
    exit_code = 2


class TargetTooLarge(BlocksError):
    code = "VMDR-E0206"
    msg = "target {url!r} has {target_size} bytes, more than the source's {source_size}"
    fix = "Use a target of the source's size or smaller (vmdr grows a smaller target)."


class BadDescriptor(BlocksError):
    code = "VMDR-E0207"
    msg = "VMDK descriptor {path!r} cannot be used: {detail}"
    fix = (
        "Give a monolithicFlat descriptor whose one FLAT extent lies beside it, or the -flat.vmdk."
    )


class OutOfRange(BlocksError):
    code = "VMDR-E0208"
    msg = "{what} of {length} bytes at offset {offset} is outside disk {url!r} of {size} bytes"
    fix = "This is a bug in the caller: requests must lie inside the disk."


class Misaligned(BlocksError):
    code = "VMDR-E0209"
    msg = (
        "{what} at offset {offset}, length {length} is not aligned to {alignment} bytes on {url!r}"
    )
    fix = "This is a bug in the caller: align requests to the backend's block_alignment."


class BackendIOError(BlocksError):
    code = "VMDR-E0210"
    msg = "{what} failed on {url!r}: {detail}"
    fix = "Check the storage behind the disk (space, device errors) and run the operation again."


class Unsupported(BlocksError):
    code = "VMDR-E0211"
    msg = "{what} is not supported by {url!r}"
    fix = "{hint}"


class StreamError(BlocksError):
    code = "VMDR-E0212"
    msg = "bad message stream: {detail}"
    fix = "Both halves must run the same vmdr version; report a bug if they do."


class OperationCancelled(BlocksError):
    code = "VMDR-E0213"
    msg = "{operation} was cancelled after {done} of {total} bytes"
    fix = (
        "The target is partly updated (see docs/blocks.md); "
        "run `vmdr disk resync SRC DST` to make it exact."
    )
    exit_code = 130


class WorkerFailed(BlocksError):
    code = "VMDR-E0214"
    msg = "hashing worker for {url!r} failed: {detail}"
    fix = "Run again with --no-parallel to see the error in the main process."


class DisksDiffer(BlocksError):
    code = "VMDR-E0220"
    msg = "{a!r} and {b!r} differ: {detail}"
    fix = "Run `vmdr disk resync {a} {b}` to make the second equal to the first."
    exit_code = 4


def rebuild_error(cls: type[VmdrError], fields: dict[str, Any]) -> VmdrError:
    """Recreate an error sent from a worker process (VmdrError takes keywords only,
    so the default exception pickling cannot rebuild it)."""
    return cls(**fields)
