"""FullCopy, DiffResync, DirtyCopy and Verify on real sparse files.

Every result is checked by reading both files with plain reads and hashlib.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

from vmdr.blocks import (
    Counters,
    DiffResync,
    DirtyCopy,
    Extent,
    FullCopy,
    OperationCancelled,
    ReadOnlyTarget,
    TargetTooLarge,
    Verify,
    open_backend,
)

from .helpers import KiB, MiB, allocated, change_blocks, make_file, random_image, same_bytes

BS = 64 * KiB


def full_copy(src: Path, dst: Path, **kw: object) -> Counters:
    with open_backend(str(src)) as s, open_backend(str(dst), "rw", create=True) as d:
        return FullCopy(s, d, **kw).run()  # type: ignore[arg-type]


def resync(src: Path, dst: Path, **kw: object) -> Counters:
    with open_backend(str(src)) as s, open_backend(str(dst), "rw") as d:
        return DiffResync(s, d, **kw).run()  # type: ignore[arg-type]


def assert_accounted(c: Counters, size: int) -> None:
    assert c.sent + c.skipped_zero + c.skipped_equal == size


@pytest.fixture
def image(tmp_path: Path) -> Path:
    # Not a multiple of the block size: the last block is short.
    return random_image(tmp_path / "src.img", 24 * MiB + 5 * KiB, seed=1)


def test_full_copy_to_new_file_is_exact_and_sparse(image: Path, tmp_path: Path) -> None:
    dst = tmp_path / "new.img"
    c = full_copy(image, dst)
    assert same_bytes(image, dst)
    assert_accounted(c, image.stat().st_size)
    assert c.zeroed == 0  # a new target holds no data, so nothing is zeroed
    assert c.written == c.sent
    # holes and zero-filled runs stay holes: the copy allocates no more than the source
    assert allocated(dst) <= allocated(image)
    assert c.read < image.stat().st_size  # holes were not read


def test_full_copy_onto_dirty_target_zeroes_only_what_must_be_zero(
    image: Path, tmp_path: Path
) -> None:
    size = image.stat().st_size
    dst = make_file(tmp_path / "dirty.img", size, [(0, os.urandom(size))])
    c = full_copy(image, dst)
    assert same_bytes(image, dst)
    assert c.zeroed == c.skipped_zero  # the target held data everywhere
    assert c.zeroed > 0


def test_sparse_source_onto_dirty_target_by_resync(image: Path, tmp_path: Path) -> None:
    size = image.stat().st_size
    dst = make_file(tmp_path / "dirty.img", size, [(0, os.urandom(size))])
    c = resync(image, dst)
    assert same_bytes(image, dst)
    assert_accounted(c, size)
    assert c.zeroed > 0


@pytest.mark.parametrize("parallel", [False, True], ids=["one-process", "worker"])
def test_diff_resync_copies_only_changed_blocks(
    image: Path, tmp_path: Path, parallel: bool
) -> None:
    size = image.stat().st_size
    dst = tmp_path / "dst.img"
    full_copy(image, dst)
    blocks = size // BS
    changed = sorted(random.Random(2).sample(range(blocks), 10))
    change_blocks(dst, [b * BS for b in changed], BS, seed=3)
    assert not same_bytes(image, dst)
    c = resync(image, dst, parallel=parallel)
    assert same_bytes(image, dst)
    assert_accounted(c, size)
    assert c.written + c.zeroed <= len(changed) * BS
    assert c.skipped_equal >= size - len(changed) * BS


def test_diff_resync_of_equal_disks_writes_nothing(image: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst.img"
    full_copy(image, dst)
    c = resync(image, dst)
    assert c.written == c.zeroed == c.sent == 0
    assert c.skipped_equal == image.stat().st_size


def test_unaligned_tail_block_is_compared_and_copied(tmp_path: Path) -> None:
    size = 3 * BS + 100
    src = make_file(tmp_path / "a.img", size, [(0, os.urandom(size - 1) + b"\xff")])
    dst = make_file(tmp_path / "b.img", size, [(0, src.read_bytes()[: size - 1] + b"\0")])
    c = resync(src, dst)
    assert same_bytes(src, dst)
    assert c.written == 100  # only the short last block travelled


def test_smaller_target_grows(image: Path, tmp_path: Path) -> None:
    dst = make_file(tmp_path / "small.img", 1 * MiB, [(0, os.urandom(MiB))])
    resync(image, dst)
    assert same_bytes(image, dst)
    dst2 = make_file(tmp_path / "small2.img", 5000)
    full_copy(image, dst2)
    assert same_bytes(image, dst2)


def test_larger_target_is_an_error(image: Path, tmp_path: Path) -> None:
    big = make_file(tmp_path / "big.img", image.stat().st_size + BS)
    before = Path(big).read_bytes()
    for run in (resync, full_copy):
        with pytest.raises(TargetTooLarge) as info:
            run(image, big)
        assert info.value.code == "VMDR-E0206"
    assert big.read_bytes() == before


def test_read_only_target_is_refused(image: Path, tmp_path: Path) -> None:
    dst = make_file(tmp_path / "ro.img", 1 * MiB)
    with open_backend(str(image)) as s, open_backend(str(dst), "r") as d:
        with pytest.raises(ReadOnlyTarget) as info:
            FullCopy(s, d)
        assert info.value.code == "VMDR-E0204"


def test_dirty_copy_given_extents_and_bitmap(image: Path, tmp_path: Path) -> None:
    size = image.stat().st_size
    stale = tmp_path / "stale.img"
    full_copy(image, stale)
    blocks = sorted(random.Random(4).sample(range(size // BS), 12))
    # The source changes; the dirty map is what change tracking would report.
    change_blocks(image, [b * BS for b in blocks], BS, seed=5)
    with open(image, "r+b") as f:  # a block cleared to zeros, reported as such
        f.seek(blocks[0] * BS)
        f.write(bytes(BS))
    bitmap = np.zeros(-(-size // BS), dtype=bool)
    bitmap[blocks] = True
    for dirty in (
        [Extent(blocks[0] * BS, BS, zero=True)] + [Extent(b * BS, BS) for b in blocks[1:]],
        bitmap,
        [(b * BS, BS) for b in blocks],
    ):
        dst = tmp_path / "dst.img"
        dst.write_bytes(b"")
        full_copy(stale, dst)
        with open_backend(str(image)) as s, open_backend(str(dst), "rw") as d:
            c = DirtyCopy(s, d, dirty).run()
        assert same_bytes(image, dst)
        assert_accounted(c, size)
        assert c.written + c.zeroed <= len(blocks) * BS
        assert c.read <= len(blocks) * BS


def test_verify_equal_and_different(image: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst.img"
    full_copy(image, dst)
    with open_backend(str(image)) as a, open_backend(str(dst)) as b:
        ok = Verify(a, b, parallel=True).run()
    assert ok.equal and ok.differences == [] and ok.root_a == ok.root_b
    change_blocks(dst, [3 * BS, 4 * BS, 100 * BS], 10, seed=6)
    with open_backend(str(image)) as a, open_backend(str(dst)) as b:
        bad = Verify(a, b, max_differences=1).run()
    assert not bad.equal and bad.root_a != bad.root_b
    assert bad.differences == [Extent(3 * BS, 2 * BS)]  # merged; only the first is listed
    assert bad.differing_bytes == 3 * BS


def test_verify_disks_of_different_sizes(tmp_path: Path) -> None:
    a = make_file(tmp_path / "a.img", 2 * MiB, [(0, b"x" * 100)])
    b = make_file(tmp_path / "b.img", 3 * MiB, [(0, b"x" * 100)])
    with open_backend(str(a)) as da, open_backend(str(b)) as db:
        result = Verify(da, db).run()
    assert not result.equal
    assert result.differences == [Extent(2 * MiB, MiB)]


def cancel_midway(op: FullCopy | DiffResync | DirtyCopy) -> None:
    op.progress_interval = 0

    def progress(c: Counters) -> None:
        if c.total and c.done >= c.total // 2:
            op.cancel()

    op._progress = progress


@pytest.mark.parametrize("first", ["copy", "resync"])
def test_cancelled_run_leaves_target_that_a_second_run_makes_exact(
    image: Path, tmp_path: Path, first: str
) -> None:
    """docs/blocks.md: an interrupted copy records nothing; the target is the
    source's below the point reached and old above it; resync makes it exact."""
    size = image.stat().st_size
    dst = make_file(tmp_path / "dst.img", size, [(0, os.urandom(size))])
    with open_backend(str(image)) as s, open_backend(str(dst), "rw") as d:
        op: FullCopy | DiffResync = FullCopy(s, d) if first == "copy" else DiffResync(s, d)
        cancel_midway(op)
        with pytest.raises(OperationCancelled) as info:
            op.run()
        assert info.value.code == "VMDR-E0213"
        assert 0 < op.counters.done < size
    assert not same_bytes(image, dst)
    reached = op.counters.done  # every byte below it has reached the target
    assert dst.read_bytes()[:reached] == image.read_bytes()[:reached]
    c = resync(image, dst)
    assert same_bytes(image, dst)
    assert c.skipped_equal >= reached


def test_cancelled_full_copy_then_full_copy_again(image: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst.img"
    with open_backend(str(image)) as s, open_backend(str(dst), "rw", create=True) as d:
        op = FullCopy(s, d)
        cancel_midway(op)
        with pytest.raises(OperationCancelled):
            op.run()
    assert dst.stat().st_size == image.stat().st_size  # grown first, then filled in order
    full_copy(image, dst)
    assert same_bytes(image, dst)


def test_operation_runs_once(image: Path, tmp_path: Path) -> None:
    with open_backend(str(image)) as s, open_backend(str(tmp_path / "d"), "rw", create=True) as d:
        op = FullCopy(s, d)
        op.run()
        with pytest.raises(RuntimeError):
            op.run()


def test_progress_reports_reach_the_end(image: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    with open_backend(str(image)) as s, open_backend(str(tmp_path / "d"), "rw", create=True) as d:
        op = FullCopy(s, d, progress=lambda c: seen.append((c.done, c.total)))
        op.progress_interval = 0
        op.run()
    size = image.stat().st_size
    assert seen[-1] == (size, size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_digests_match_naive_hashing_for_any_extent_size(tmp_path: Path) -> None:
    """Data extents of many sizes (below, at and above the read buffer) hash
    exactly as xxh3-128 over plain reads does."""
    import xxhash

    from vmdr.blocks import hash_segments, zero_digest

    writes, offset = [], 0
    for length in (4 * KiB, 300 * KiB, 700 * KiB, MiB, MiB + 64 * KiB, 17 * MiB + 4 * KiB):
        writes.append((offset, os.urandom(length)))
        offset += length + 3 * MiB
    path = make_file(tmp_path / "sizes.img", offset, writes)
    data = path.read_bytes()
    with open_backend(str(path)) as disk:
        got: list[bytes] = []
        for seg in hash_segments(disk, BS):
            digests = iter(seg.digests[i : i + 16] for i in range(0, len(seg.digests), 16))
            for i, zero in enumerate(seg.zero_mask().tolist()):
                block = seg.start_block + i
                got.append(zero_digest(min(BS, offset - block * BS)) if zero else next(digests))
    assert got == [xxhash.xxh3_128_digest(data[i : i + BS]) for i in range(0, offset, BS)]
