"""Verify: prove two disks equal, or name where they differ.

Side B streams its ``BlockDigests``; side A hashes itself and compares block
by block. Locally each side is hashed in a worker process of its own when it
can be (``parallel``). The result carries both roots, so
a later check can compare one value per disk, and the first
``max_differences`` differing ranges (block-granular, merged).

Equality is equality of xxh3-128 digests: a collision between two different
64 KiB blocks has probability about 2^-128 for data nobody crafted (xxh3 is
not a cryptographic hash; docs/blocks.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from vmdr.blocks.backend import Backend
from vmdr.blocks.extent import Extent, runs_of
from vmdr.blocks.hashing import (
    DEFAULT_BLOCK_SIZE,
    DigestCursor,
    check_block_size,
    differing_blocks,
    hash_segments,
    segment_blocks,
)
from vmdr.blocks.hashmap import HashMapBuilder
from vmdr.blocks.messages import BlockDigests
from vmdr.blocks.operation import Counters, Operation, ProgressCallback
from vmdr.blocks.parallel import worth_a_worker

__all__ = ["Verify", "VerifyResult"]


@dataclass
class VerifyResult:
    equal: bool
    size_a: int
    size_b: int
    differences: list[Extent]
    differing_bytes: int
    root_a: bytes
    root_b: bytes
    counters: Counters = field(default_factory=Counters)

    def to_dict(self) -> dict[str, Any]:
        return {
            "equal": self.equal,
            "size_a": self.size_a,
            "size_b": self.size_b,
            "differing_bytes": self.differing_bytes,
            "differences": [e.to_dict() for e in self.differences],
            "root_a": self.root_a.hex(),
            "root_b": self.root_b.hex(),
            **self.counters.to_dict(),
        }


def _folded(stream: Iterable[BlockDigests], builder: HashMapBuilder) -> Iterator[BlockDigests]:
    for seg in stream:
        builder.add(seg)
        yield seg


class Verify(Operation[VerifyResult]):
    """Compare disk ``a`` with disk ``b``.

    Run locally with ``run()``. Across a network, side A builds the operation
    with ``b=None`` and calls ``compare_with(digests_from_b, size_b)``; side B
    only runs ``hash_segments`` on its disk."""

    name = "verify"

    def __init__(
        self,
        a: Backend,
        b: Backend | None,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        max_differences: int = 10,
        parallel: bool | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        super().__init__(progress=progress)
        self.a, self.b = a, b
        self.block_size = check_block_size(block_size)
        self.max_differences = max_differences
        self.parallel = parallel
        self._differences: list[Extent] = []
        self._differing = 0

    def _run(self) -> VerifyResult:
        if self.b is None:
            raise ValueError("Verify without disk b: call compare_with()")
        size_b = self.b.size()
        parallel = self.parallel
        if parallel is None:
            parallel = worth_a_worker(size_b)
        if parallel and self.b.shareable:
            from vmdr.blocks.parallel import DigestStreams

            with DigestStreams(self.a, self.b, self.block_size, check=self.check) as streams:
                result = self.compare_with(streams.theirs, size_b, streams.mine)
                self.counters.read += streams.read
            return result
        local = hash_segments(self.b, self.block_size, counters=self.counters, check=self.check)
        return self.compare_with(local, size_b)

    def compare_with(
        self,
        theirs: Iterable[BlockDigests],
        size_b: int,
        mine: Iterable[BlockDigests] | None = None,
    ) -> VerifyResult:
        """Side A: compare ``a`` with B's digest stream. ``mine``: A's own
        digests when hashed elsewhere (a worker); by default A is hashed here."""
        builder_b = HashMapBuilder(size_b, self.block_size)
        root_a = self._compare(_folded(theirs, builder_b), size_b, mine)
        root_b = builder_b.finish().root
        size_a = self.a.size()
        if size_a != size_b:
            low, high = min(size_a, size_b), max(size_a, size_b)
            self._record(low, high)
        equal = size_a == size_b and not self._differing and root_a == root_b
        return VerifyResult(
            equal=equal,
            size_a=size_a,
            size_b=size_b,
            differences=self._differences,
            differing_bytes=self._differing,
            root_a=root_a,
            root_b=root_b,
            counters=self.counters,
        )

    def _compare(
        self, theirs: Iterable[BlockDigests], size_b: int, mine: Iterable[BlockDigests] | None
    ) -> bytes:
        bs = self.block_size
        size_a = self.a.size()
        self.counters.total = size_a
        nblocks_b = -(-size_b // bs)
        common = min(-(-size_a // bs), nblocks_b)
        low = min(size_a, size_b)
        cursor = DigestCursor(theirs, bs)
        builder = HashMapBuilder(size_a, bs)
        if mine is None:
            mine = hash_segments(self.a, bs, counters=self.counters, check=self.check)
        for seg in mine:
            builder.add(seg)
            hi = min(seg.end_block, common)
            if hi > seg.start_block:
                mask = seg.zero_mask()[: hi - seg.start_block]
                rows = None if seg.all_zero() else seg.rows()[: hi - seg.start_block]
                differ = differing_blocks((mask, rows), cursor.take(seg.start_block, mask.size))
                for first, end, value in runs_of(differ):
                    if value:
                        lo = (seg.start_block + first) * bs
                        self._record(lo, min((seg.start_block + end) * bs, low))
            self.counters.done = min(seg.end_block * bs, size_a)
        step = segment_blocks(bs)
        for pos in range(common, nblocks_b, step):  # drain B's extra blocks
            cursor.take(pos, min(step, nblocks_b - pos))
        cursor.finish(nblocks_b)
        return builder.finish().root

    def _record(self, lo: int, hi: int) -> None:
        if hi <= lo:
            return
        self._differing += hi - lo
        diffs = self._differences
        if diffs and diffs[-1].end == lo:
            diffs[-1] = Extent(diffs[-1].start, hi - diffs[-1].start)
        elif len(diffs) < self.max_differences:
            diffs.append(Extent(lo, hi - lo))
