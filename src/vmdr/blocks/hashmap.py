"""The compact whole-disk hash map and its one-value summary (the root).

A full per-block map of a 1 TiB disk would be 16 Mi digests x 16 B = 256 MiB.
The stored map is two-level instead, and both levels come out of the one
hashing pass:

    fine     xxh3-128 per 64 KiB block: streamed (BlockDigests), compared
             segment by segment, never held for the whole disk
    coarse   xxh3-128 over the 16 fine digests of each 1 MiB chunk: kept,
             16 MiB per TiB
    zero     one bit per block, kept: 2 MiB per TiB
    root     xxh3-128 over a header and the coarse digests: one value per disk

Two disks are equal (up to xxh3-128 collisions) when their roots are equal;
``HashMap.diff`` names the differing 1 MiB chunks without reading either disk.
Numbers: docs/blocks.md.

Stored form (``to_bytes``), little-endian:
``MAGIC b"VMHM"(4) VERSION(1) PAD(3) SIZE(8) BLOCK_SIZE(4) CHUNK_BLOCKS(4)
ROOT(16) COARSE(16 * chunks) ZERO(ceil(blocks / 8))``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import xxhash

from vmdr.blocks.errors import StreamError
from vmdr.blocks.extent import Extent
from vmdr.blocks.hashing import (
    segment_blocks,
    zero_digest,
)
from vmdr.blocks.messages import DIGEST_SIZE, BlockDigests

__all__ = [
    "COARSE_BYTES",
    "HashMap",
    "HashMapBuilder",
    "assemble",
    "chunk_blocks",
    "compute_root",
]

COARSE_BYTES = 1 << 20
MAGIC = b"VMHM"
VERSION = 1
_HEADER = struct.Struct("<4sB3xQII16s")


def chunk_blocks(block_size: int) -> int:
    return max(1, COARSE_BYTES // block_size)


@dataclass(frozen=True, eq=False)
class HashMap:
    size: int
    block_size: int
    chunk_blocks: int
    coarse: npt.NDArray[np.uint8]  # (chunks, 16)
    zero: npt.NDArray[np.uint8]  # packed bits, LSB first
    root: bytes

    @property
    def nblocks(self) -> int:
        return -(-self.size // self.block_size)

    @property
    def nbytes(self) -> int:
        return int(self.coarse.nbytes + self.zero.nbytes)

    def zero_mask(self) -> npt.NDArray[np.bool_]:
        return np.unpackbits(self.zero, count=self.nblocks, bitorder="little").view(bool)

    def diff(self, other: HashMap) -> list[Extent]:
        """Byte ranges (whole chunks) where the two maps differ."""
        if (self.block_size, self.chunk_blocks) != (other.block_size, other.chunk_blocks):
            raise ValueError("hash maps of different block sizes cannot be compared")
        n = min(len(self.coarse), len(other.coarse))
        differ = (self.coarse[:n] != other.coarse[:n]).any(axis=1)
        span = self.block_size * self.chunk_blocks
        out: list[Extent] = []
        padded = np.concatenate(([False], differ, [False]))
        edges = np.flatnonzero(padded[1:] != padded[:-1])
        low = min(self.size, other.size)
        for first, end in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
            start, stop = first * span, min(end * span, low)
            if stop > start:
                out.append(Extent(start, stop - start))
        if self.size != other.size:
            out.append(Extent(low, max(self.size, other.size) - low))
        return out

    def to_bytes(self) -> bytes:
        head = _HEADER.pack(
            MAGIC, VERSION, self.size, self.block_size, self.chunk_blocks, self.root
        )
        return head + self.coarse.tobytes() + self.zero.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> HashMap:
        if len(data) < _HEADER.size:
            raise StreamError(detail="hash map too short")
        magic, version, size, block_size, cb, root = _HEADER.unpack_from(data)
        if magic != MAGIC or version != VERSION:
            raise StreamError(detail=f"not a version {VERSION} hash map")
        nblocks = -(-size // block_size)
        nchunks = -(-nblocks // cb)
        body = memoryview(data)[_HEADER.size :]
        expected = nchunks * DIGEST_SIZE + -(-nblocks // 8)
        if len(body) != expected:
            raise StreamError(detail=f"hash map body is {len(body)} bytes, not {expected}")
        coarse = np.frombuffer(body[: nchunks * DIGEST_SIZE], np.uint8).reshape(-1, DIGEST_SIZE)
        zero = np.frombuffer(body[nchunks * DIGEST_SIZE :], np.uint8)
        return cls(size, block_size, cb, coarse.copy(), zero.copy(), root)


def compute_root(size: int, block_size: int, cb: int, coarse: npt.NDArray[np.uint8]) -> bytes:
    h = xxhash.xxh3_128(b"vmdr-hashmap\x01" + struct.pack("<QII", size, block_size, cb))
    h.update(np.ascontiguousarray(coarse).data)
    return h.digest()


class HashMapBuilder:
    """Folds a ``BlockDigests`` stream (blocks ``[start_block, end_block)`` of a
    disk, in order) into the coarse digests and zero bits of that range."""

    def __init__(
        self, size: int, block_size: int, start_block: int = 0, end_block: int | None = None
    ) -> None:
        self.size = size
        self.block_size = block_size
        self.cb = chunk_blocks(block_size)
        nblocks = -(-size // block_size)
        self.start = start_block
        self.end = nblocks if end_block is None else min(end_block, nblocks)
        if start_block % segment_blocks(block_size):
            raise ValueError("a partial hash map must start on a segment boundary")
        span = self.end - self.start
        self.coarse = np.zeros((-(-span // self.cb), DIGEST_SIZE), dtype=np.uint8)
        self.zero = np.zeros(-(-span // 8), dtype=np.uint8)
        self._next = start_block
        tail = size % block_size
        self._last_zero = zero_digest(tail or block_size)
        zero_row = np.frombuffer(zero_digest(block_size), np.uint8)
        self._zero_row = zero_row
        self._zero_chunk = xxhash.xxh3_128_digest(np.tile(zero_row, self.cb).data)

    def add(self, seg: BlockDigests) -> None:
        if seg.start_block != self._next or seg.end_block > self.end:
            raise StreamError(detail=f"digests for block {seg.start_block}, expected {self._next}")
        self._next = seg.end_block
        rel = seg.start_block - self.start
        packed = np.frombuffer(seg.zero, np.uint8)
        self.zero[rel // 8 : rel // 8 + packed.size] = packed
        c0, c1 = rel // self.cb, -(-(seg.end_block - self.start) // self.cb)
        if not seg.all_zero():
            rows = self._rows(seg)
            for c in range(c0, c1):
                lo = (c - c0) * self.cb
                self._set_chunk(c, rows[lo : lo + self.cb])
            return
        # Holes: every whole chunk has the same digest; only the disk's last
        # chunk can be short or end in a short block.
        last = self.start + (c1 - 1) * self.cb
        odd = seg.end_block - last != self.cb or seg.end_block * self.block_size > self.size
        self.coarse[c0 : c1 - 1 if odd else c1] = np.frombuffer(self._zero_chunk, np.uint8)
        if odd:
            self._set_chunk(
                c1 - 1, self._rows(BlockDigests.holes(last, seg.end_block - last, self.block_size))
            )

    def _rows(self, seg: BlockDigests) -> npt.NDArray[np.uint8]:
        mask = seg.zero_mask()
        rows = np.empty((seg.count, DIGEST_SIZE), dtype=np.uint8)
        rows[mask] = self._zero_row
        if seg.digests:
            rows[~mask] = np.frombuffer(seg.digests, np.uint8).reshape(-1, DIGEST_SIZE)
        if seg.end_block * self.block_size > self.size and mask[-1]:
            rows[-1] = np.frombuffer(self._last_zero, np.uint8)
        return rows

    def _set_chunk(self, c: int, rows: npt.NDArray[np.uint8]) -> None:
        self.coarse[c] = np.frombuffer(
            xxhash.xxh3_128_digest(np.ascontiguousarray(rows).data), np.uint8
        )

    def parts(self) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        if self._next != self.end:
            raise StreamError(detail=f"digests stopped at block {self._next} of {self.end}")
        return self.coarse, self.zero

    def finish(self) -> HashMap:
        coarse, zero = self.parts()
        if self.start != 0:
            raise ValueError("finish() needs the whole disk; assemble partial maps")
        root = compute_root(self.size, self.block_size, self.cb, coarse)
        return HashMap(self.size, self.block_size, self.cb, coarse, zero, root)


def assemble(
    size: int,
    block_size: int,
    parts: Sequence[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]],
) -> HashMap:
    """Join partial maps of consecutive segment-aligned ranges."""
    cb = chunk_blocks(block_size)
    coarse = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 16), np.uint8)
    zero = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.uint8)
    return HashMap(size, block_size, cb, coarse, zero, compute_root(size, block_size, cb, coarse))
