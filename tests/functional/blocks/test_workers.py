"""Hashing in worker processes: same answers as in one process, errors
carried back with their codes, and workers started safely from a threaded
parent."""

from __future__ import annotations

import faulthandler
import os
import resource
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vmdr.blocks import (
    BlocksError,
    DiffResync,
    DiskNotFound,
    Verify,
    WorkerFailed,
    hash_disk,
    hash_segments,
    open_backend,
    parallel,
)
from vmdr.blocks.messages import BlockDigests
from vmdr.blocks.parallel import DigestStream, SharedFile

from .helpers import MiB, change_blocks, make_file, random_image, same_bytes

BS = 64 << 10


@pytest.fixture
def big(tmp_path: Path) -> Path:
    # Larger than two 32 MiB segments, mostly holes so it is quick.
    path = random_image(tmp_path / "big.img", 100 * MiB, seed=21, data_fraction=0.1)
    return path


def test_split_hash_map_equals_single_process(big: Path) -> None:
    with open_backend(str(big)) as disk:
        one = hash_disk(disk)
        two = hash_disk(disk, workers=2)
        three = hash_disk(disk, workers=3)
    assert one.root == two.root == three.root
    assert (one.coarse == two.coarse).all() and (one.zero == three.zero).all()


def test_worker_errors_come_back_with_their_code(tmp_path: Path) -> None:
    with (
        DigestStream(str(tmp_path / "missing.img"), BS) as stream,
        pytest.raises(DiskNotFound) as info,
    ):
        list(stream)
    assert info.value.code == "VMDR-E0203"


def test_resync_with_a_worker_from_a_threaded_parent(big: Path, tmp_path: Path) -> None:
    """With another thread alive, workers start by forkserver, not fork."""
    dst = tmp_path / "dst.img"
    dst.write_bytes(big.read_bytes())
    change_blocks(dst, [5 * MiB, 70 * MiB], BS, seed=22)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        with open_backend(str(big)) as s, open_backend(str(dst), "rw") as d:
            counters = DiffResync(s, d, parallel=True).run()
    finally:
        stop.set()
        thread.join()
    assert same_bytes(big, dst)
    assert counters.written + counters.zeroed <= 2 * BS


def test_target_grown_before_the_worker_hashes_it(big: Path, tmp_path: Path) -> None:
    dst = make_file(tmp_path / "small.img", 10 * MiB, [(0, big.read_bytes()[: 10 * MiB])])
    with open_backend(str(big)) as s, open_backend(str(dst), "rw") as d:
        DiffResync(s, d, parallel=True).run()
    assert same_bytes(big, dst)


def test_mapped_hashing_equals_buffered_hashing(tmp_path: Path) -> None:
    """Workers hash mapped files; the digests must be those of a buffered read,
    with zero-filled data, holes and a short last block."""
    path = random_image(tmp_path / "d.img", 40 * MiB + 12345, seed=23, data_fraction=0.5)
    with open_backend(str(path)) as disk:
        mapped = list(hash_segments(disk, BS, mapped=True))
        buffered = list(hash_segments(disk, BS))
    assert mapped == buffered
    assert any(not s.all_zero() for s in mapped) and any(s.zero_mask().any() for s in mapped)


def test_verify_with_both_sides_in_workers_names_the_difference(big: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.img"
    other.write_bytes(big.read_bytes())
    change_blocks(other, [64 * MiB], BS, seed=24)
    with open_backend(str(big)) as a, open_backend(str(other)) as b:
        result = Verify(a, b, parallel=True).run()
        alone = Verify(a, b, parallel=False).run()
    assert not result.equal
    assert [(e.start, e.length) for e in result.differences] == [(64 * MiB, BS)]
    assert (result.root_a, result.root_b) == (alone.root_a, alone.root_b)
    assert result.counters.read == alone.counters.read


@pytest.fixture
def quiet_crash() -> Iterator[None]:
    """A worker killed by SIGBUS leaves neither a "Fatal Python error"
    traceback (pytest's faulthandler, inherited by fork) nor a core file."""
    enabled = faulthandler.is_enabled()
    faulthandler.disable()
    core = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, core[1]))
    yield
    resource.setrlimit(resource.RLIMIT_CORE, core)
    if enabled:
        faulthandler.enable(file=sys.__stderr__)


@pytest.mark.usefixtures("quiet_crash")
def test_a_worker_killed_by_sigbus_is_reported_as_such(tmp_path: Path) -> None:
    """SIGBUS is what a mapped file truncated under a worker raises; the
    operation's process hears of it as WorkerFailed, with the cause."""
    fifo = tmp_path / "held.img"
    os.mkfifo(fifo)  # opening it for reading blocks: the worker lives until killed
    with DigestStream(str(fifo), BS) as stream, pytest.raises(WorkerFailed) as info:
        os.kill(stream._worker.proc.pid, signal.SIGBUS)
        list(stream)
    assert info.value.code == "VMDR-E0214"
    assert "SIGBUS" in str(info.value)


def test_source_truncated_during_a_resync_fails_with_a_code(tmp_path: Path) -> None:
    """A disk cut short under a running resync ends the operation with a
    coded error, never by a signal in this process: mostly this process's
    read of a differing block meets the shorter file (OutOfRange); a worker
    still mapping it would die by SIGBUS (WorkerFailed). Restored, a second
    run finishes the target."""
    src = random_image(tmp_path / "src.img", 200 * MiB, seed=26, data_fraction=1.0)
    keep = src.read_bytes()
    dst = tmp_path / "dst.img"
    dst.write_bytes(keep)
    change_blocks(dst, [i * 4 * MiB for i in range(50)], BS, seed=27)
    shrunk = False

    def shrink(_: object) -> None:
        nonlocal shrunk
        if not shrunk:
            shrunk = True
            os.truncate(src, 8 * MiB)

    with open_backend(str(src)) as s, open_backend(str(dst), "rw") as d:
        op = DiffResync(s, d, parallel=True, progress=shrink)
        op.progress_interval = 0
        with pytest.raises(BlocksError) as info:
            op.run()
    assert shrunk and info.value.code.startswith("VMDR-E02")
    src.write_bytes(keep)
    with open_backend(str(src)) as s, open_backend(str(dst), "rw") as d:
        DiffResync(s, d, parallel=True).run()
    assert same_bytes(src, dst)


def test_streams_cut_in_different_segment_sizes_line_up(
    big: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source hashed here (a memory disk cannot move to a worker) comes in
    32 MiB segments; the target's worker streams 64 MiB ones. The cursor must
    line them up block by block."""
    # The worker sees the patched size only if it is forked from this process.
    assert parallel._context().get_start_method() == "fork"
    monkeypatch.setattr(parallel, "STREAM_SEGMENT_BYTES", 64 * MiB)
    data = big.read_bytes()
    dst = tmp_path / "dst.img"
    dst.write_bytes(data)
    change_blocks(dst, [1 * MiB, 40 * MiB, 90 * MiB], BS, seed=28)
    with open_backend(f"memory:?size={len(data)}", "rw") as s:
        s.write(0, data)
        with open_backend(str(dst), "rw") as d:
            counters = DiffResync(s, d, parallel=True).run()
    assert dst.read_bytes() == data
    assert counters.written + counters.zeroed == 3 * BS


def per_block(segments: list[BlockDigests]) -> np.ndarray:
    """One row per block (zero blocks as zero rows), however the stream was cut."""
    assert [s.start_block for s in segments[1:]] == [s.end_block for s in segments[:-1]]
    return np.concatenate([s.rows() for s in segments])


@pytest.mark.parametrize("threaded", [False, True], ids=["fork", "forkserver"])
def test_shared_file_is_hashed_as_opened_even_after_its_path_is_swapped(
    big: Path, tmp_path: Path, threaded: bool
) -> None:
    """A service hands a worker the file it opened and checked, never its
    path: after another file is renamed over the path, the worker still hashes
    the opened one (inherited under fork; passed with SCM_RIGHTS through the
    fork server when other threads are alive)."""
    other = random_image(tmp_path / "other.img", 100 * MiB, seed=23, data_fraction=0.1)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    with open_backend(str(big)) as disk:
        expected = per_block(list(hash_segments(disk, BS)))
        shared = SharedFile.of(disk)
        assert shared is not None
        os.rename(other, big)  # the path now names a different file
        if threaded:
            thread.start()
        try:
            assert parallel._context().get_start_method() == ("forkserver" if threaded else "fork")
            with DigestStream(shared, BS) as stream:
                got = per_block(list(stream))
        finally:
            stop.set()
            if threaded:
                thread.join()
        assert disk.size() == 100 * MiB  # and this process's descriptor is still open
    with open_backend(str(big)) as now:
        swapped = per_block(list(hash_segments(now, BS)))
    assert (got == expected).all()
    assert not (swapped == expected).all()  # the swap did change what the path names


def test_shared_file_is_only_for_mappable_files() -> None:
    with open_backend("memory:?size=1048576", "rw") as disk:
        assert SharedFile.of(disk) is None


@pytest.mark.parametrize("start_block", [1, 700, 5000])
def test_a_stream_may_start_at_any_block(big: Path, start_block: int) -> None:
    """A master target resuming a digest stream starts where the process
    server asks, not only at a segment boundary; past the end is empty."""
    with open_backend(str(big)) as disk:
        in_process = list(hash_segments(disk, BS, start_block=start_block))
        with DigestStream(SharedFile.of(disk) or "", BS, start_block=start_block) as stream:
            in_worker = list(stream)
    if not in_process:
        assert in_worker == []
        return
    assert in_worker[0].start_block == start_block
    assert (per_block(in_worker) == per_block(in_process)).all()


def test_a_shared_file_is_not_pickled_outside_a_worker_start(big: Path) -> None:
    import pickle

    with open_backend(str(big)) as disk:
        shared = SharedFile.of(disk)
        with pytest.raises(RuntimeError):
            pickle.dumps(shared)
