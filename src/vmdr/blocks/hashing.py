"""Block hashing: fixed-size blocks, xxh3-128 per block, zero blocks found
without hashing and holes skipped without reading.

The digest of block ``i`` is ``xxh3_128(bytes of block i)`` (the last block
may be short). A block that reads as zeros is never hashed: its digest is the
constant ``zero_digest(length)``, and on the wire it is one bit
(``BlockDigests``). Why 64 KiB and xxh3-128: docs/blocks.md (measured).

``hash_segments`` walks a disk and yields ``BlockDigests`` of at most
``segment_blocks`` blocks (32 MiB of disk by default); a run of holes is one
message of up to 64 GiB. Memory is one read buffer and one segment, whatever the disk
size. ``DigestCursor`` re-slices the other side's stream so the two sides need
not agree on segment boundaries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import xxhash

from vmdr.blocks.backend import Backend
from vmdr.blocks.errors import InvalidBlockSize, StreamError
from vmdr.blocks.extent import block_ranges
from vmdr.blocks.messages import DIGEST_SIZE, BlockDigests
from vmdr.blocks.operation import Counters

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "MAX_BLOCK_SIZE",
    "MIN_BLOCK_SIZE",
    "DigestCursor",
    "check_block_size",
    "differing_blocks",
    "hash_segments",
    "no_check",
    "read_buffer",
    "resync_bytes",
    "segment_blocks",
    "zero_blocks",
    "zero_digest",
]

DEFAULT_BLOCK_SIZE = 64 << 10
MIN_BLOCK_SIZE = 4 << 10
MAX_BLOCK_SIZE = 16 << 20
READ_BYTES = 1 << 20  # measured best of 256 KiB-16 MiB (docs/performance.md)
MAP_BYTES = 16 << 20  # one mapping per 16 MiB window (hash_segments(mapped=True))
SEGMENT_BYTES = 32 << 20
MAX_HOLE_SEGMENT_BLOCKS = 1 << 20

_digest = xxhash.xxh3_128_digest

Check = Callable[[], None]


def no_check() -> None:
    """A ``check`` that never stops anything (for use outside an Operation)."""


def check_block_size(block_size: int) -> int:
    """``block_size`` if it is a power of two in range, else InvalidBlockSize."""
    if (
        not isinstance(block_size, int)
        or block_size < MIN_BLOCK_SIZE
        or block_size > MAX_BLOCK_SIZE
        or block_size & (block_size - 1)
    ):
        raise InvalidBlockSize(block_size=block_size, low=MIN_BLOCK_SIZE, high=MAX_BLOCK_SIZE)
    return block_size


def segment_blocks(block_size: int, segment_bytes: int = SEGMENT_BYTES) -> int:
    """Blocks per digest message; a multiple of 8 (whole bitmap bytes) and of
    the hash map's chunk, so segments never split either. ``segment_bytes``
    must be a power-of-two multiple of ``SEGMENT_BYTES``."""
    times, rest = divmod(segment_bytes, SEGMENT_BYTES)
    if rest or times < 1 or times & (times - 1):
        raise ValueError(f"segment_bytes must be a power-of-two multiple of {SEGMENT_BYTES}")
    return max(8, segment_bytes // block_size)


def read_buffer(block_size: int, backend: Backend | None = None) -> bytearray:
    """A reusable read buffer holding a whole number of blocks (at least the
    backend's ``preferred_read``)."""
    want = max(READ_BYTES, backend.preferred_read if backend is not None else 0)
    return bytearray(max(want // block_size, 1) * block_size)


@lru_cache(maxsize=64)
def zero_digest(length: int) -> bytes:
    return _digest(bytes(length))


def zero_blocks(view: memoryview, block_size: int) -> npt.NDArray[np.bool_]:
    """Which blocks of ``view`` are all zeros (the last one may be short).

    Most data blocks have a non-zero first word, so only blocks whose first 8
    bytes are zero get a full scan: random data costs almost nothing, and a
    zero block costs one numpy ``any`` (~13 GB/s, far less than hashing it)."""
    length = len(view)
    full, tail = divmod(length, block_size)
    out = np.zeros(full + (1 if tail else 0), dtype=bool)
    if full:
        words = np.frombuffer(view, dtype=np.uint64, count=full * block_size // 8)
        rows = words.reshape(full, block_size // 8)
        candidates = np.flatnonzero(rows[:, 0] == 0)
        if candidates.size > full // 2:
            out[:full] = ~rows.any(axis=1)
        else:
            for i in candidates.tolist():
                out[i] = not rows[i].any()
    if tail:
        out[full] = not np.frombuffer(view[full * block_size :], dtype=np.uint8).any()
    return out


def _digest_chunk(chunk: memoryview, block_size: int, digests: bytearray) -> npt.NDArray[np.bool_]:
    """Append the digest of each data block of ``chunk``; its zero mask."""
    zmask = zero_blocks(chunk, block_size)
    for i in np.flatnonzero(~zmask).tolist():
        digests += _digest(chunk[i * block_size : (i + 1) * block_size])
    return zmask


def hash_segments(
    backend: Backend,
    block_size: int = DEFAULT_BLOCK_SIZE,
    *,
    start_block: int = 0,
    end_block: int | None = None,
    counters: Counters | None = None,
    check: Check = no_check,
    mapped: bool = False,
    segment_bytes: int = SEGMENT_BYTES,
) -> Iterator[BlockDigests]:
    """Digests of the disk's blocks ``[start_block, end_block)``, in order.

    ``counters.read`` counts bytes read; holes are skipped without reading.
    ``mapped``: hash the backend's bytes in place (``map_read``, where it is
    ``mappable``) instead of copying them into a buffer first. Only in a
    worker process: a mapped file that shrinks kills its reader with SIGBUS.
    ``segment_bytes``: disk bytes per message (32 MiB times a power of two);
    larger segments mean fewer messages, which a local pipe prefers
    (``parallel``)."""
    check_block_size(block_size)
    stats = counters if counters is not None else Counters()
    size = backend.size()
    nblocks = -(-size // block_size)
    end = nblocks if end_block is None else min(end_block, nblocks)
    seg = segment_blocks(block_size, segment_bytes)
    data = block_ranges(backend.extents(), block_size, size)
    map_it = mapped and backend.mappable
    view = memoryview(bytearray(0) if map_it else read_buffer(block_size, backend))
    step = max(MAP_BYTES // block_size, 1) if map_it else len(view) // block_size
    ri = 0
    pos = start_block
    while pos < end:
        check()
        seg_end = min(end, (pos // seg + 1) * seg)
        while ri < len(data) and data[ri][1] <= pos:
            ri += 1
        if ri == len(data) or data[ri][0] >= seg_end:
            # Only holes until the next data: one message, aligned to segments.
            next_data = data[ri][0] if ri < len(data) else end
            limit = (pos + MAX_HOLE_SEGMENT_BLOCKS) // seg * seg
            hole_end = max(seg_end, min(end, next_data // seg * seg, limit))
            yield BlockDigests.holes(pos, hole_end - pos, block_size)
            pos = hole_end
            continue
        zero = np.ones(seg_end - pos, dtype=bool)
        digests = bytearray()
        j = ri
        while j < len(data) and data[j][0] < seg_end:
            block, stop = max(data[j][0], pos), min(data[j][1], seg_end)
            while block < stop:
                check()
                count = min(stop - block, step)
                offset = block * block_size
                length = min(count * block_size, size - offset)
                if map_it:
                    with backend.map_read(offset, length) as chunk:
                        zmask = _digest_chunk(chunk, block_size, digests)
                else:
                    chunk = view[:length]
                    backend.readinto(offset, chunk)
                    zmask = _digest_chunk(chunk, block_size, digests)
                stats.read += length
                zero[block - pos : block - pos + count] = zmask
                block += count
            j += 1
        yield BlockDigests.build(pos, block_size, zero, bytes(digests))
        pos = seg_end


class DigestCursor:
    """Reads another side's ``BlockDigests`` stream by block ranges of our
    choosing; checks that it covers the disk in order without gaps."""

    def __init__(self, stream: Iterable[BlockDigests], block_size: int) -> None:
        self._stream = iter(stream)
        self._block_size = block_size
        self._seg: BlockDigests | None = None
        self._mask: npt.NDArray[np.bool_] = np.zeros(0, dtype=bool)
        self._rows: npt.NDArray[np.uint64] | None = None
        self._next = 0  # first block not yet received

    def take(
        self, start: int, count: int
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.uint64] | None]:
        """Zero mask and digest rows (None: all zero) of ``[start, start+count)``."""
        if count <= 0:
            return np.zeros(0, dtype=bool), None
        masks: list[npt.NDArray[np.bool_]] = []
        rows: list[npt.NDArray[np.uint64] | None] = []
        pos, end = start, start + count
        while pos < end:
            seg = self._seg
            if seg is None or pos >= seg.end_block:
                seg = self._advance()
            if pos < seg.start_block:
                raise StreamError(detail=f"block {pos} was skipped by the other side")
            lo, hi = pos - seg.start_block, min(end, seg.end_block) - seg.start_block
            masks.append(self._mask[lo:hi])
            rows.append(None if self._rows is None else self._rows[lo:hi])
            pos = seg.start_block + hi
        mask = masks[0] if len(masks) == 1 else np.concatenate(masks)
        if all(r is None for r in rows):
            return mask, None
        parts = [
            np.zeros((m.size, 2), np.uint64) if r is None else r
            for m, r in zip(masks, rows, strict=True)
        ]
        return mask, parts[0] if len(parts) == 1 else np.concatenate(parts)

    def finish(self, nblocks: int) -> None:
        """Check the stream ends exactly at ``nblocks``."""
        received = self._next
        if received < nblocks:
            raise StreamError(detail=f"the other side stopped at block {received} of {nblocks}")
        if next(self._stream, None) is not None or received > nblocks:
            raise StreamError(detail=f"the other side sent blocks past {nblocks}")

    def _advance(self) -> BlockDigests:
        seg = next(self._stream, None)
        if seg is None:
            raise StreamError(detail=f"the other side stopped at block {self._next}")
        if seg.block_size != self._block_size:
            raise StreamError(detail=f"block size {seg.block_size}, expected {self._block_size}")
        if seg.start_block != self._next:
            raise StreamError(detail=f"digests start at block {seg.start_block}, not {self._next}")
        mask = seg.zero_mask()
        if len(seg.digests) != DIGEST_SIZE * (seg.count - int(mask.sum())):
            raise StreamError(detail=f"digests do not match the zero bitmap at {seg.start_block}")
        self._seg = seg
        self._next = seg.end_block
        self._mask = mask
        self._rows = None if seg.all_zero() else seg.rows(mask)
        return seg


def differing_blocks(
    ours: tuple[npt.NDArray[np.bool_], npt.NDArray[np.uint64] | None],
    theirs: tuple[npt.NDArray[np.bool_], npt.NDArray[np.uint64] | None],
) -> npt.NDArray[np.bool_]:
    """Per block: do the two sides differ? Zero equals zero without digests."""
    zmine, rmine = ours
    ztheirs, rtheirs = theirs
    differ: npt.NDArray[np.bool_] = zmine != ztheirs
    if rmine is not None and rtheirs is not None:
        both_data = ~(zmine | ztheirs)
        differ |= both_data & (rmine != rtheirs).any(axis=1)
    return differ


def resync_bytes(source: Backend, target: Backend, block_size: int = DEFAULT_BLOCK_SIZE) -> int:
    """Exactly how many bytes a differential resync of ``source`` onto
    ``target`` would write or zero: per block, by digests (zero equals zero
    without reading). Blocks the target does not wholly hold yet (it grows
    first, with zeros) are compared by reading them. Reads both disks, writes
    nothing: the transfer plan before reprotect."""
    size, tsize = source.size(), target.size()
    nblocks = -(-size // block_size)
    whole = min(nblocks, tsize // block_size)  # blocks the target holds in full
    theirs = DigestCursor(hash_segments(target, block_size, end_block=whole), block_size)
    total = 0
    for seg in hash_segments(source, block_size, end_block=whole):
        mask = seg.zero_mask()
        mine = (mask, None if seg.all_zero() else seg.rows(mask))
        total += int(differing_blocks(mine, theirs.take(seg.start_block, seg.count)).sum())
    theirs.finish(whole)
    total *= block_size
    partial = min(nblocks, -(-tsize // block_size))  # first block wholly beyond the target
    for block in range(whole, partial):  # the target's short last block: read both
        start = block * block_size
        length = min(block_size, size - start)
        ours, old = bytearray(length), bytearray(length)
        source.readinto(start, memoryview(ours))
        target.readinto(start, memoryview(old)[: tsize - start])
        total += length if ours != old else 0
    if partial < nblocks:  # beyond the target, which reads as zeros there: the data blocks
        for seg in hash_segments(source, block_size, start_block=partial):
            data = ~seg.zero_mask()
            total += int(data.sum()) * block_size
            if seg.end_block == nblocks and data[-1]:
                total -= nblocks * block_size - size  # the source's short last block
    return total
