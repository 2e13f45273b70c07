"""Differential resync: both sides hash their blocks, only differing blocks
travel.

Conversation (see ``messages``): the source sends ``DiskInfo``; the target
grows if it must and streams its ``BlockDigests``; the source hashes its own
disk segment by segment, compares with numpy, and sends a ``DataRun`` for each
run of differing data blocks and a ``ZeroRun`` for each run of blocks that
became zero; then ``Done`` with the source's root.

Locally, ``DiffResync`` hashes each disk in a worker process of its own (one
core each; xxhash holds the GIL), where files are hashed in place, mapped
rather than copied; this process compares the two digest streams, reads the
differing blocks and writes them. Memory stays at a read buffer and a few
segments, whatever the disk size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from vmdr.blocks.backend import Backend
from vmdr.blocks.copy import SourceReader, coalesce
from vmdr.blocks.extent import runs_of
from vmdr.blocks.hashing import (
    DEFAULT_BLOCK_SIZE,
    Check,
    DigestCursor,
    check_block_size,
    differing_blocks,
    hash_segments,
    no_check,
)
from vmdr.blocks.hashmap import HashMapBuilder
from vmdr.blocks.messages import BlockDigests, DataRun, DiskInfo, Done, ZeroRun
from vmdr.blocks.operation import Counters, Operation, ProgressCallback, TargetWriter

__all__ = ["DiffResync", "DiffResyncSource"]


# Below this a worker process costs more than it saves.
class DiffResyncSource:
    """Source half of DiffResync."""

    def __init__(
        self,
        src: Backend,
        block_size: int = DEFAULT_BLOCK_SIZE,
        counters: Counters | None = None,
        check: Check = no_check,
    ) -> None:
        self.src = src
        self.block_size = check_block_size(block_size)
        self.counters = counters if counters is not None else Counters()
        self.check = check
        self.size = src.size()
        self.root = b""

    def begin(self) -> DiskInfo:
        self.counters.total = self.size
        return DiskInfo(self.size, self.block_size)

    def diff(
        self, theirs: Iterable[BlockDigests], mine: Iterable[BlockDigests] | None = None
    ) -> Iterator[DataRun | ZeroRun | Done]:
        """Runs that make the target equal to the source, given its digests.
        ``mine``: the source's own digests when hashed elsewhere (a worker);
        by default this half hashes the source itself."""
        yield from coalesce(self._runs(theirs, mine))
        yield Done(self.size, self.root)

    def _runs(
        self, theirs: Iterable[BlockDigests], mine: Iterable[BlockDigests] | None
    ) -> Iterator[DataRun | ZeroRun]:
        bs, size = self.block_size, self.size
        nblocks = -(-size // bs)
        stats = self.counters
        cursor = DigestCursor(theirs, bs)
        builder = HashMapBuilder(size, bs)
        reader = SourceReader(self.src, bs, stats, self.check)
        if mine is None:
            mine = hash_segments(self.src, bs, counters=stats, check=self.check)
        for seg in mine:
            builder.add(seg)
            mask = seg.zero_mask()
            ours = (mask, None if seg.all_zero() else seg.rows(mask))
            differ = differing_blocks(ours, cursor.take(seg.start_block, seg.count))
            for first, end, value in runs_of(differ):
                lo = (seg.start_block + first) * bs
                hi = min((seg.start_block + end) * bs, size)
                if not value:
                    stats.skipped_equal += hi - lo
                    continue
                # Split by the source's zero mask: zero blocks need no read.
                for zfirst, zend, zero in runs_of(mask[first:end]):
                    zlo = lo + zfirst * bs
                    zhi = min(lo + zend * bs, hi)
                    yield from reader.runs(zlo, zhi, known_zero=zero)
            stats.done = min(seg.end_block * bs, size)
        cursor.finish(nblocks)
        self.root = builder.finish().root


class DiffResync(Operation[Counters]):
    """Make ``dst`` equal to ``src`` by copying only the blocks that differ.

    ``parallel``: hash each disk in a worker process (default: when the target
    is at least 64 MiB and a second CPU is there to run it). Workers need a
    shareable target; the source then moves to a worker too if it is
    shareable, else it is hashed here."""

    name = "resync"

    def __init__(
        self,
        src: Backend,
        dst: Backend,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        parallel: bool | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        super().__init__(progress=progress)
        self.src, self.dst = src, dst
        self.block_size = check_block_size(block_size)
        self.parallel = parallel
        self.writer = TargetWriter(dst, self.counters)
        self.root = b""

    def _run(self) -> Counters:
        source = DiffResyncSource(self.src, self.block_size, self.counters, self.check)
        self.writer.apply(source.begin())
        parallel = self.parallel
        if parallel is None:
            from vmdr.blocks.parallel import worth_a_worker

            parallel = worth_a_worker(self.dst.size())
        if parallel and self.dst.shareable:
            from vmdr.blocks.parallel import DigestStreams

            with DigestStreams(self.src, self.dst, self.block_size, check=self.check) as streams:
                for msg in source.diff(streams.theirs, streams.mine):
                    self.writer.apply(msg)
                self.counters.read += streams.read
        else:
            theirs_local = hash_segments(
                self.dst, self.block_size, counters=self.counters, check=self.check
            )
            for msg in source.diff(theirs_local):
                self.writer.apply(msg)
        self.root = source.root
        return self.counters
