from __future__ import annotations

import os

import numpy as np
import pytest
import xxhash

from vmdr.blocks import InvalidBlockSize, open_backend
from vmdr.blocks.hashing import (
    DigestCursor,
    check_block_size,
    differing_blocks,
    hash_segments,
    zero_blocks,
    zero_digest,
)
from vmdr.blocks.messages import BlockDigests

BS = 64 << 10


@pytest.mark.parametrize("bad", [0, 1000, 3 << 12, 2048, 32 << 20, -4096])
def test_block_size_must_be_a_power_of_two_in_range(bad: int) -> None:
    with pytest.raises(InvalidBlockSize) as info:
        check_block_size(bad)
    assert info.value.code == "VMDR-E0205" and info.value.exit_code == 2


def test_zero_blocks_finds_zero_blocks_without_hashing() -> None:
    buf = bytearray(4 * BS + 100)
    buf[BS + 8] = 1  # first word zero, data later: needs the full scan
    buf[3 * BS] = 1
    assert zero_blocks(memoryview(buf), BS).tolist() == [True, False, True, False, True]
    buf[-1] = 7
    assert zero_blocks(memoryview(buf), BS).tolist()[-1] is False
    assert zero_blocks(memoryview(bytearray(8 * BS)), BS).all()


def naive_digests(data: bytes, bs: int) -> list[bytes]:
    return [xxhash.xxh3_128_digest(data[i : i + bs]) for i in range(0, len(data), bs)]


def expand(segments: list[BlockDigests], size: int, bs: int) -> list[bytes]:
    out: list[bytes] = []
    for seg in segments:
        mask = seg.zero_mask()
        it = iter(seg.digests[i : i + 16] for i in range(0, len(seg.digests), 16))
        for i, z in enumerate(mask.tolist()):
            block = seg.start_block + i
            length = min(bs, size - block * bs)
            out.append(zero_digest(length) if z else next(it))
    return out


@pytest.mark.parametrize("bs", [4096, BS, 1 << 20])
def test_segments_equal_naive_per_block_xxh3(bs: int) -> None:
    size = 70 * BS + 333
    with open_backend(f"memory:?size={size}", "rw") as disk:
        disk.write(5 * BS + 17, os.urandom(3 * BS))
        disk.write(size - 100, os.urandom(100))
        disk.write(40 * BS, bytes(BS))  # allocated zeros
        data = bytearray(size)
        disk.readinto(0, data)
        segments = list(hash_segments(disk, bs))
    assert segments[0].start_block == 0
    assert sum(s.count for s in segments) == -(-size // bs)
    assert expand(segments, size, bs) == naive_digests(bytes(data), bs)


def test_holes_are_not_read() -> None:
    with open_backend(f"memory:?size={1 << 30}", "rw") as disk:
        disk.write(1 << 29, b"x")
        from vmdr.blocks import Counters

        c = Counters()
        segments = list(hash_segments(disk, BS, counters=c))
    assert c.read == BS
    assert len(segments) < 10  # runs of holes are one message each


def test_cursor_reslices_any_segmentation() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random(100) < 0.5
    digests = rng.integers(0, 2**63, size=(100, 2), dtype=np.uint64)
    digests[mask] = 0

    def seg(lo: int, hi: int) -> BlockDigests:
        m = mask[lo:hi]
        return BlockDigests.build(lo, BS, m, digests[lo:hi][~m].tobytes())

    cursor = DigestCursor([seg(0, 7), seg(7, 50), seg(50, 100)], BS)
    for lo, hi in [(0, 3), (3, 60), (60, 100)]:
        m, rows = cursor.take(lo, hi - lo)
        assert (m == mask[lo:hi]).all()
        assert rows is not None and (rows == digests[lo:hi]).all()
    cursor.finish(100)


def test_cursor_detects_gaps_and_short_streams() -> None:
    from vmdr.blocks import StreamError

    gap = DigestCursor([BlockDigests.holes(0, 8, BS), BlockDigests.holes(16, 8, BS)], BS)
    gap.take(0, 8)
    with pytest.raises(StreamError):
        gap.take(8, 8)
    short = DigestCursor([BlockDigests.holes(0, 8, BS)], BS)
    short.take(0, 8)
    with pytest.raises(StreamError):
        short.finish(16)
    lying = DigestCursor([BlockDigests(0, 8, BS, b"\x00", b"")], BS)  # 8 data blocks, 0 digests
    with pytest.raises(StreamError):
        lying.take(0, 8)


def test_differing_blocks_zero_equals_zero() -> None:
    z = np.array([True, False, False, True])
    rows = np.array([[0, 0], [1, 2], [3, 4], [0, 0]], dtype=np.uint64)
    other = rows.copy()
    other[2] = [9, 9]
    assert differing_blocks((z, rows), (z, other)).tolist() == [False, False, True, False]
    assert differing_blocks((z, None), (np.ones(4, bool), None)).tolist() == [
        False,
        True,
        True,
        False,
    ]
