"""Messages between the two halves of an operation.

Every operation is a *source half* that produces messages and a *target half*
that consumes them, so a network can sit between them (the wire codec comes
with the transport layer). The messages are plain frozen dataclasses of ints
and bytes; each carries a ``TYPE`` byte for that codec. Planned frame payloads
(little-endian, after the transport's frame header):

    DiskInfo      TYPE=1  SIZE(8) BLOCK_SIZE(4)
    BlockDigests  TYPE=2  START_BLOCK(8) COUNT(8) BLOCK_SIZE(4) ZERO(ceil(COUNT/8)) DIGESTS(16*k)
    DataRun       TYPE=3  OFFSET(8) DATA(rest of frame)
    ZeroRun       TYPE=4  OFFSET(8) LENGTH(8)
    Done          TYPE=5  SIZE(8) ROOT(16 or 0)

Conversations, source (S) and target (T):

    FullCopy, DirtyCopy   S→T DiskInfo, then DataRun/ZeroRun in ascending offset order, Done
    DiffResync            S→T DiskInfo; T→S BlockDigests covering the disk in order;
                          S→T DataRun/ZeroRun for the differing blocks, Done
    Verify                B→A BlockDigests; A compares (nothing is written)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from vmdr.blocks.backend import ReadableBuffer

__all__ = ["DIGEST_SIZE", "BlockDigests", "DataRun", "DiskInfo", "Done", "Message", "ZeroRun"]

DIGEST_SIZE = 16  # xxh3-128, canonical (big-endian) bytes


@dataclass(frozen=True, slots=True)
class DiskInfo:
    """The source disk's size and the block size both halves use."""

    TYPE: ClassVar[int] = 1
    size: int
    block_size: int


@dataclass(frozen=True, slots=True)
class BlockDigests:
    """Digests of blocks ``[start_block, start_block + count)``.

    Zero blocks are a bit each, not a digest: ``zero`` is a bitmap (bit ``i``,
    least significant bit first, set when block ``start_block + i`` reads as
    zeros) and ``digests`` holds 16 bytes only for the other blocks, in order.
    A run of holes therefore costs one bit per block on the wire."""

    TYPE: ClassVar[int] = 2
    start_block: int
    count: int
    block_size: int
    zero: bytes
    digests: bytes

    @classmethod
    def build(
        cls, start_block: int, block_size: int, zero_mask: npt.NDArray[np.bool_], digests: bytes
    ) -> BlockDigests:
        packed = np.packbits(zero_mask, bitorder="little").tobytes()
        return cls(start_block, int(zero_mask.size), block_size, packed, digests)

    @classmethod
    def holes(cls, start_block: int, count: int, block_size: int) -> BlockDigests:
        """``count`` zero blocks."""
        packed = np.packbits(np.ones(count, dtype=bool), bitorder="little").tobytes()
        return cls(start_block, count, block_size, packed, b"")

    @property
    def end_block(self) -> int:
        return self.start_block + self.count

    def zero_mask(self) -> npt.NDArray[np.bool_]:
        bits = np.unpackbits(
            np.frombuffer(self.zero, dtype=np.uint8), count=self.count, bitorder="little"
        )
        return bits.view(bool)

    def all_zero(self) -> bool:
        return not self.digests

    def rows(self, mask: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.uint64]:
        """Digests as ``(count, 2)`` uint64 rows, zero blocks as zero rows (cheap
        to compare; the real zero digest is a constant, see ``hashing``)."""
        if mask is None:
            mask = self.zero_mask()
        rows = np.zeros((self.count, 2), dtype=np.uint64)
        if self.digests:
            rows[~mask] = np.frombuffer(self.digests, dtype=np.uint64).reshape(-1, 2)
        return rows


@dataclass(frozen=True, slots=True)
class DataRun:
    """Bytes to write at ``offset``. In-process, ``data`` may be a view into the
    sender's reused buffer: it is valid only until the next message is taken."""

    TYPE: ClassVar[int] = 3
    offset: int
    data: ReadableBuffer

    @property
    def length(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class ZeroRun:
    """``length`` bytes at ``offset`` must read as zeros."""

    TYPE: ClassVar[int] = 4
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Done:
    """End of the stream; ``root`` is the source's whole-disk digest when the
    source computed one (DiffResync), else empty."""

    TYPE: ClassVar[int] = 5
    size: int
    root: bytes = b""


Message = DiskInfo | BlockDigests | DataRun | ZeroRun | Done
