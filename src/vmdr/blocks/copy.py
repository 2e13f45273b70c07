"""Copies that need no comparison: ``FullCopy`` (every byte of the source)
and ``DirtyCopy`` (the ranges a change-tracking map names).

Source halves read only data: holes reported by ``extents`` become
``ZeroRun`` messages without a read, and blocks that read as zeros inside
data become ``ZeroRun`` too (found with numpy, not by hashing). The target
half is ``TargetWriter``, which zeroes only where the target holds data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import numpy.typing as npt

from vmdr.blocks.backend import Backend
from vmdr.blocks.errors import OperationCancelled
from vmdr.blocks.extent import Extent, RangeSet, bitmap_to_extents, block_ranges, runs_of
from vmdr.blocks.hashing import (
    DEFAULT_BLOCK_SIZE,
    Check,
    check_block_size,
    no_check,
    read_buffer,
    zero_blocks,
)
from vmdr.blocks.messages import DataRun, DiskInfo, Done, Message, ZeroRun
from vmdr.blocks.operation import Counters, Operation, ProgressCallback, TargetWriter

__all__ = [
    "DirtyCopy",
    "DirtyCopySource",
    "DirtyMap",
    "FullCopy",
    "FullCopySource",
    "SourceReader",
    "coalesce",
]

DirtyMap = Iterable[Extent] | Iterable[tuple[int, int]] | npt.NDArray[np.bool_]


class SourceReader:
    """Turns block-aligned byte ranges of a source disk into runs."""

    def __init__(self, src: Backend, block_size: int, counters: Counters, check: Check) -> None:
        self.src = src
        self.block_size = block_size
        self.counters = counters
        self.check = check
        self.size = src.size()
        self.data = RangeSet(
            (lo * block_size, min(hi * block_size, self.size))
            for lo, hi in block_ranges(src.extents(), block_size, self.size)
        )
        self._buf = memoryview(read_buffer(block_size, src))

    def runs(self, lo: int, hi: int, known_zero: bool = False) -> Iterator[DataRun | ZeroRun]:
        """Runs covering ``[lo, hi)``; each DataRun is valid until the next run."""
        stats = self.counters
        if known_zero:
            stats.skipped_zero += hi - lo
            stats.done += hi - lo
            yield ZeroRun(lo, hi - lo)
            return
        pos = lo
        for dlo, dhi in self.data.overlapping(lo, hi):
            if dlo > pos:
                stats.skipped_zero += dlo - pos
                stats.done += dlo - pos
                yield ZeroRun(pos, dlo - pos)
            yield from self._read(dlo, dhi)
            pos = dhi
        if pos < hi:
            stats.skipped_zero += hi - pos
            stats.done += hi - pos
            yield ZeroRun(pos, hi - pos)

    def _read(self, lo: int, hi: int) -> Iterator[DataRun | ZeroRun]:
        bs = self.block_size
        stats = self.counters
        offset = lo
        while offset < hi:
            self.check()
            length = min(len(self._buf), hi - offset)
            chunk = self._buf[:length]
            self.src.readinto(offset, chunk)
            stats.read += length
            zmask = zero_blocks(chunk, bs)
            for first, end, zero in runs_of(zmask):
                a, b = first * bs, min(end * bs, length)
                if zero:
                    stats.skipped_zero += b - a
                    yield ZeroRun(offset + a, b - a)
                else:
                    stats.sent += b - a
                    yield DataRun(offset + a, chunk[a:b])
            stats.done += length
            offset += length


def coalesce(runs: Iterable[DataRun | ZeroRun]) -> Iterator[DataRun | ZeroRun]:
    """Join adjacent ZeroRuns (one zero request instead of many).

    If the source half is cancelled, the run held back is still passed on
    before the error, so every byte below ``counters.done`` has reached the
    target (docs/blocks.md, "interrupted copy")."""
    pending: ZeroRun | None = None
    try:
        for run in runs:
            if isinstance(run, ZeroRun):
                if pending is not None and pending.offset + pending.length == run.offset:
                    pending = ZeroRun(pending.offset, pending.length + run.length)
                    continue
                if pending is not None:
                    yield pending
                pending = run
            else:
                if pending is not None:
                    yield pending
                    pending = None
                yield run
    except OperationCancelled:
        if pending is not None:
            yield pending
        raise
    if pending is not None:
        yield pending


class FullCopySource:
    """Source half of FullCopy: DiskInfo, runs for the whole disk, Done."""

    def __init__(
        self,
        src: Backend,
        block_size: int = DEFAULT_BLOCK_SIZE,
        counters: Counters | None = None,
        check: Check = no_check,
    ) -> None:
        self.block_size = check_block_size(block_size)
        self.counters = counters if counters is not None else Counters()
        self.reader = SourceReader(src, block_size, self.counters, check)

    def messages(self) -> Iterator[Message]:
        size = self.reader.size
        self.counters.total = size
        yield DiskInfo(size, self.block_size)
        yield from coalesce(self.reader.runs(0, size))
        yield Done(size)


def dirty_plan(dirty: DirtyMap, block_size: int, size: int) -> list[tuple[int, int, bool]]:
    """``(start, end, known_zero)`` ranges to copy, block-aligned, in order.

    Data ranges are rounded out to whole blocks. Known-zero ranges are rounded
    in (a partly cleared block is read instead), and data wins where they meet."""
    if isinstance(dirty, np.ndarray):
        extents = bitmap_to_extents(dirty, block_size, size)
    else:
        extents = [e if isinstance(e, Extent) else Extent(e[0], e[1]) for e in dirty]
    bs = block_size
    data: list[tuple[int, int]] = []
    zero: list[tuple[int, int]] = []
    for e in extents:
        end = min(e.end, size)
        if end <= e.start:
            continue
        if not e.zero:
            data.append((e.start // bs * bs, min(-(-end // bs) * bs, size)))
            continue
        inner_lo = -(-e.start // bs) * bs
        inner_hi = end if end == size else end // bs * bs
        if inner_hi <= inner_lo:
            data.append((e.start // bs * bs, min(-(-end // bs) * bs, size)))
            continue
        zero.append((inner_lo, inner_hi))
        if e.start < inner_lo:
            data.append((inner_lo - bs, inner_lo))
        if inner_hi < end:
            data.append((inner_hi, min(inner_hi + bs, size)))
    data_set = RangeSet(data)
    plan = [(lo, hi, False) for lo, hi in data_set]
    for lo, hi in RangeSet(zero):
        pos = lo
        for dlo, dhi in data_set.overlapping(lo, hi):
            if dlo > pos:
                plan.append((pos, dlo, True))
            pos = dhi
        if pos < hi:
            plan.append((pos, hi, True))
    return sorted(plan)


class DirtyCopySource:
    """Source half of DirtyCopy: DiskInfo, runs for the dirty ranges, Done."""

    def __init__(
        self,
        src: Backend,
        dirty: DirtyMap,
        block_size: int = DEFAULT_BLOCK_SIZE,
        counters: Counters | None = None,
        check: Check = no_check,
    ) -> None:
        self.block_size = check_block_size(block_size)
        self.counters = counters if counters is not None else Counters()
        self.reader = SourceReader(src, block_size, self.counters, check)
        self.plan = dirty_plan(dirty, block_size, self.reader.size)

    def messages(self) -> Iterator[Message]:
        size = self.reader.size
        dirty_bytes = sum(hi - lo for lo, hi, _ in self.plan)
        self.counters.total = dirty_bytes
        self.counters.skipped_equal += size - dirty_bytes
        yield DiskInfo(size, self.block_size)
        yield from coalesce(r for lo, hi, z in self.plan for r in self.reader.runs(lo, hi, z))
        yield Done(size)


class FullCopy(Operation[Counters]):
    """Copy every byte of ``src`` onto ``dst`` (grown if smaller)."""

    name = "copy"

    def __init__(
        self,
        src: Backend,
        dst: Backend,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        progress: ProgressCallback | None = None,
    ) -> None:
        super().__init__(progress=progress)
        self.src, self.dst = src, dst
        self.block_size = check_block_size(block_size)
        self.writer = TargetWriter(dst, self.counters)

    def _run(self) -> Counters:
        source = FullCopySource(self.src, self.block_size, self.counters, self.check)
        for msg in source.messages():
            self.writer.apply(msg)
        return self.counters


class DirtyCopy(Operation[Counters]):
    """Copy the ranges of a dirty map (extents, ``(start, length)`` pairs or a
    per-block bool bitmap) from ``src`` onto ``dst``. The map is trusted: bytes
    outside it are assumed equal, except a region the target must grow by,
    which is copied too."""

    name = "dirty copy"

    def __init__(
        self,
        src: Backend,
        dst: Backend,
        dirty: DirtyMap,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        progress: ProgressCallback | None = None,
    ) -> None:
        super().__init__(progress=progress)
        self.src, self.dst = src, dst
        self.block_size = check_block_size(block_size)
        self.writer = TargetWriter(dst, self.counters)
        extents = (
            bitmap_to_extents(dirty, block_size)
            if isinstance(dirty, np.ndarray)
            else [e if isinstance(e, Extent) else Extent(e[0], e[1]) for e in dirty]
        )
        size, current = src.size(), dst.size()
        if current < size:
            extents.append(Extent(current, size - current))
        self.dirty = extents

    def _run(self) -> Counters:
        source = DirtyCopySource(self.src, self.dirty, self.block_size, self.counters, self.check)
        for msg in source.messages():
            self.writer.apply(msg)
        return self.counters
