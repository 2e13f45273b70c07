"""The block engine: disks opened by URL, block hashing, and the operations
that move data between disks (see docs/blocks.md).

    from vmdr.blocks import open_backend, DiffResync

    with open_backend("file:///srv/a.img") as src, open_backend("b.img", "rw") as dst:
        counters = DiffResync(src, dst).run()
"""

from vmdr.blocks.backend import Backend, Mode
from vmdr.blocks.copy import DirtyCopy, DirtyCopySource, FullCopy, FullCopySource
from vmdr.blocks.errors import (
    BackendIOError,
    BadDescriptor,
    BadURL,
    BlocksError,
    DiskNotFound,
    DisksDiffer,
    InvalidBlockSize,
    Misaligned,
    OperationCancelled,
    OutOfRange,
    ReadOnlyTarget,
    StreamError,
    TargetTooLarge,
    UnknownScheme,
    Unsupported,
    WorkerFailed,
)
from vmdr.blocks.extent import Extent, bitmap_to_extents
from vmdr.blocks.hashing import DEFAULT_BLOCK_SIZE, check_block_size, hash_segments, zero_digest
from vmdr.blocks.hashmap import HashMap
from vmdr.blocks.messages import BlockDigests, DataRun, DiskInfo, Done, Message, ZeroRun
from vmdr.blocks.operation import Counters, Operation, ProgressCallback, TargetWriter
from vmdr.blocks.parallel import hash_disk
from vmdr.blocks.resync import DiffResync, DiffResyncSource
from vmdr.blocks.urls import SCHEMES, open_backend
from vmdr.blocks.verify import Verify, VerifyResult

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "SCHEMES",
    "Backend",
    "BackendIOError",
    "BadDescriptor",
    "BadURL",
    "BlockDigests",
    "BlocksError",
    "Counters",
    "DataRun",
    "DiffResync",
    "DiffResyncSource",
    "DirtyCopy",
    "DirtyCopySource",
    "DiskInfo",
    "DiskNotFound",
    "DisksDiffer",
    "Done",
    "Extent",
    "FullCopy",
    "FullCopySource",
    "HashMap",
    "InvalidBlockSize",
    "Message",
    "Misaligned",
    "Mode",
    "Operation",
    "OperationCancelled",
    "OutOfRange",
    "ProgressCallback",
    "ReadOnlyTarget",
    "StreamError",
    "TargetTooLarge",
    "TargetWriter",
    "UnknownScheme",
    "Unsupported",
    "Verify",
    "VerifyResult",
    "WorkerFailed",
    "ZeroRun",
    "bitmap_to_extents",
    "check_block_size",
    "hash_disk",
    "hash_segments",
    "open_backend",
    "zero_digest",
]
