"""Extents: immutable byte ranges of a disk, and the range arithmetic the
operations need (rounding to blocks, intersecting, dirty bitmaps).

An ``Extent`` from ``Backend.extents("zero")`` says whether a range reads as
zeros without reading it (a hole, an unallocated page range). ``zero=False``
means "may hold data", not "holds non-zero bytes": allocated zeros are data.
In a dirty map (``DirtyCopy``), ``zero=False`` means "changed, read it" and
``zero=True`` means "changed and now reads as zeros" (an Azure page-range diff
reports such cleared ranges), which is copied without reading.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Extent",
    "RangeSet",
    "bitmap_to_extents",
    "block_ranges",
    "merge_extents",
    "runs_of",
]


@dataclass(frozen=True, slots=True)
class Extent:
    """``length`` bytes from ``start``; ``zero`` tells they read as zeros."""

    start: int
    length: int
    zero: bool = False

    def __post_init__(self) -> None:
        if self.start < 0 or self.length < 0:
            raise ValueError(f"extent with negative start or length: {self!r}")

    @property
    def end(self) -> int:
        return self.start + self.length

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "length": self.length, "zero": self.zero}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Extent:
        return cls(start=int(d["start"]), length=int(d["length"]), zero=bool(d["zero"]))


def merge_extents(extents: Iterable[Extent]) -> list[Extent]:
    """Sort, drop empty extents and join neighbours of the same kind."""
    out: list[Extent] = []
    for ext in sorted((e for e in extents if e.length), key=lambda e: e.start):
        if out and out[-1].zero == ext.zero and ext.start <= out[-1].end:
            last = out[-1]
            out[-1] = Extent(last.start, max(last.end, ext.end) - last.start, last.zero)
        else:
            out.append(ext)
    return out


class RangeSet:
    """Disjoint, sorted half-open byte ranges ``[start, end)``, built once and
    queried many times (bisect), e.g. "where does the target hold data"."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        merged: list[list[int]] = []
        for start, end in sorted(r for r in ranges if r[1] > r[0]):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self._starts = [r[0] for r in merged]
        self._ends = [r[1] for r in merged]

    @classmethod
    def data_of(cls, extents: Iterable[Extent]) -> RangeSet:
        return cls((e.start, e.end) for e in extents if not e.zero)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self._starts, self._ends, strict=True)

    def __len__(self) -> int:
        return len(self._starts)

    def total(self) -> int:
        return sum(self._ends) - sum(self._starts)

    def overlapping(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """The parts of the set inside ``[start, end)``, in order."""
        i = bisect.bisect_right(self._ends, start)
        while i < len(self._starts) and self._starts[i] < end:
            lo, hi = max(self._starts[i], start), min(self._ends[i], end)
            if hi > lo:
                yield lo, hi
            i += 1


def block_ranges(extents: Iterable[Extent], block_size: int, size: int) -> list[tuple[int, int]]:
    """Block index ranges ``[first, end)`` that touch data, in order.

    Data extents are rounded outward to whole blocks, so a block that is partly
    hole and partly data is read whole (its hole part reads as zeros)."""
    nblocks = -(-size // block_size)
    out: list[tuple[int, int]] = []
    for ext in extents:
        if ext.zero or not ext.length:
            continue
        first = ext.start // block_size
        end = min(nblocks, -(-min(ext.end, size) // block_size))
        if end <= first:
            continue
        if out and first <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((first, end))
    return out


def bitmap_to_extents(
    bitmap: npt.ArrayLike, block_size: int, size: int | None = None
) -> list[Extent]:
    """Turn a per-block dirty bitmap (bool or 0/1 array) into dirty extents,
    one per run of set bits, clipped to ``size`` when given."""
    bits = np.asarray(bitmap).astype(bool, copy=False).ravel()
    if not bits.size:
        return []
    padded = np.concatenate(([False], bits, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    out: list[Extent] = []
    for first, end in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
        start, stop = first * block_size, end * block_size
        if size is not None:
            stop = min(stop, size)
        if stop > start:
            out.append(Extent(start, stop - start))
    return out


def runs_of(mask: npt.NDArray[np.bool_]) -> Iterator[tuple[int, int, bool]]:
    """``(first, end, value)`` for each run of equal values in a bool array."""
    if not mask.size:
        return
    edges = [0, *(np.flatnonzero(np.diff(mask)) + 1).tolist(), int(mask.size)]
    for first, end in itertools.pairwise(edges):
        yield first, end, bool(mask[first])
