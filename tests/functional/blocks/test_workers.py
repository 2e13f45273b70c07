"""Hashing in worker processes: same answers as in one process, errors
carried back with their codes, and workers started safely from a threaded
parent."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from vmdr.blocks import DiffResync, DiskNotFound, hash_disk, open_backend
from vmdr.blocks.parallel import DigestStream

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
