from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vmdr.blocks.extent import (
    Extent,
    RangeSet,
    bitmap_to_extents,
    block_ranges,
    merge_extents,
    runs_of,
)


def test_extent_is_an_immutable_value_with_dict_form() -> None:
    ext = Extent(4096, 8192, zero=True)
    assert ext.end == 12288
    assert ext.to_dict() == {"start": 4096, "length": 8192, "zero": True}
    assert Extent.from_dict(ext.to_dict()) == ext
    assert hash(ext) == hash(Extent(4096, 8192, True))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ext.start = 0  # type: ignore[misc]
    with pytest.raises(ValueError):
        Extent(-1, 10)


def test_merge_joins_neighbours_of_the_same_kind() -> None:
    got = merge_extents(
        [Extent(10, 5), Extent(0, 10), Extent(15, 0), Extent(15, 5, True), Extent(20, 5, True)]
    )
    assert got == [Extent(0, 15), Extent(15, 10, True)]


def test_range_set_overlapping() -> None:
    rs = RangeSet([(10, 20), (0, 5), (18, 30), (40, 50)])
    assert list(rs) == [(0, 5), (10, 30), (40, 50)]
    assert list(rs.overlapping(3, 45)) == [(3, 5), (10, 30), (40, 45)]
    assert list(rs.overlapping(30, 40)) == []
    assert rs.total() == 35 and len(rs) == 3


def test_block_ranges_round_data_out_to_blocks() -> None:
    extents = [Extent(0, 100, True), Extent(100, 50), Extent(150, 250, True), Extent(400, 30)]
    assert block_ranges(extents, 64, 430) == [(1, 3), (6, 7)]
    assert block_ranges([Extent(0, 430, True)], 64, 430) == []


def test_bitmap_to_extents_clips_to_size() -> None:
    bits = np.array([1, 1, 0, 1, 0, 0, 1], dtype=bool)
    assert bitmap_to_extents(bits, 10, 65) == [Extent(0, 20), Extent(30, 10), Extent(60, 5)]
    assert bitmap_to_extents(np.zeros(0, bool), 10) == []


def test_runs_of() -> None:
    mask = np.array([True, True, False, True])
    assert list(runs_of(mask)) == [(0, 2, True), (2, 3, False), (3, 4, True)]
    assert list(runs_of(np.zeros(0, bool))) == []
