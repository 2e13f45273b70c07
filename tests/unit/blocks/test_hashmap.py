from __future__ import annotations

import os
import time

import pytest

from vmdr.blocks import Extent, StreamError, hash_disk, open_backend
from vmdr.blocks.hashmap import HashMap

BS = 64 << 10
TiB = 1 << 40


def test_equal_content_gives_equal_root_whatever_the_layout() -> None:
    size = 5 * (1 << 20) + 4096
    data = os.urandom(1 << 20)
    with (
        open_backend(f"memory:?size={size}", "rw") as a,
        open_backend(f"memory:?size={size}", "rw") as b,
    ):
        a.write(2 << 20, data)
        b.write(0, bytes(2 << 20))  # allocated zeros instead of a hole
        b.write(2 << 20, data)
        ma, mb = hash_disk(a), hash_disk(b)
        assert ma.root == mb.root and ma.diff(mb) == []
        b.write(size - 1, b"\x01")
        mc = hash_disk(b)
    assert mc.root != ma.root
    assert ma.diff(mc) == [Extent(5 << 20, 4096)]


def test_root_depends_on_size() -> None:
    with open_backend("memory:?size=65536") as a, open_backend("memory:?size=131072") as b:
        assert hash_disk(a).root != hash_disk(b).root


def test_round_trip_bytes_and_rejects_garbage() -> None:
    with open_backend(f"memory:?size={3 << 20}", "rw") as disk:
        disk.write(1 << 20, os.urandom(1000))
        m = hash_disk(disk)
    again = HashMap.from_bytes(m.to_bytes())
    assert again.root == m.root and (again.coarse == m.coarse).all()
    assert (again.zero_mask() == m.zero_mask()).all()
    assert again.zero_mask().sum() == 3 * 16 - 1
    with pytest.raises(StreamError):
        HashMap.from_bytes(b"nope" + m.to_bytes()[4:])
    with pytest.raises(StreamError):
        HashMap.from_bytes(m.to_bytes()[:-1])


def test_map_of_a_1_tib_disk_fits_in_a_few_tens_of_mib() -> None:
    start = time.monotonic()
    with open_backend(f"memory:?size={TiB}", "rw") as disk:
        for i in range(8):
            disk.write(i * (TiB // 8) + 12345 * BS, os.urandom(3 * BS))
        m = hash_disk(disk)
    # 16 B per 1 MiB chunk + 1 bit per 64 KiB block
    assert m.nbytes == (TiB >> 20) * 16 + (TiB // BS) // 8
    assert m.nbytes < 20 << 20
    assert int(m.zero_mask().sum()) == TiB // BS - 8 * 3
    assert time.monotonic() - start < 10
