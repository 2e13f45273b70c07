"""vmdr's dirty map and TrackedBackend, on memory disks and real files in tmp_path."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest

from vmdr.blocks import DirtyCopy, Extent, open_backend
from vmdr.blocks.backend import Backend
from vmdr.providers.azure.errors import DirtyMapBusy, DirtyMapInvalid
from vmdr.providers.azure.tracking import (
    HEADER_SIZE,
    DirtyMap,
    TrackedBackend,
    disk_identity,
    open_tracked,
)

KiB, MiB = 1 << 10, 1 << 20
BS = 64 * KiB


def _memory(size: int) -> str:
    return f"memory:{uuid.uuid4().hex}?size={size}&align=512"


def test_marks_survive_a_restart_and_take_resets(tmp_path: Path) -> None:
    path = tmp_path / "disk0.map"
    url = "pageblob://acct/c/disk0?lease=abc"
    with DirtyMap(path, url=url, size=10 * MiB) as dm:
        dm.mark(0, 1)  # one byte dirties its whole block
        dm.mark(BS * 3 + 512, BS)  # spans blocks 3 and 4
        dm.mark(10 * MiB - 512, 512)
        assert dm.dirty() == [Extent(0, BS), Extent(3 * BS, 2 * BS), Extent(10 * MiB - BS, BS)]
    # A new process (same disk, another lease): the marks are still there.
    with DirtyMap(path, url="pageblob://acct/c/disk0?lease=other", size=10 * MiB) as dm:
        assert dm.dirty()[0] == Extent(0, BS)
        taken = dm.take()
        assert taken == [Extent(0, BS), Extent(3 * BS, 2 * BS), Extent(10 * MiB - BS, BS)]
        assert dm.dirty() == [] and dm.generation == 1
        dm.commit()
        assert dm.take() == []


def test_an_uncommitted_take_is_returned_again(tmp_path: Path) -> None:
    with DirtyMap(tmp_path / "m", url="memory:x", size=MiB) as dm:
        dm.mark(0, 512)
        assert dm.take() == [Extent(0, BS)]
        dm.mark(5 * BS, 512)  # the sync failed; more writes came
    with DirtyMap(tmp_path / "m", url="memory:x", size=MiB) as dm:
        assert dm.take() == [Extent(0, BS), Extent(5 * BS, BS)]
        dm.commit()
        dm.mark(BS, 1)
        assert dm.take() == [Extent(BS, BS)]


def test_a_map_is_never_applied_to_another_disk(tmp_path: Path) -> None:
    path = tmp_path / "m"
    DirtyMap(path, url="pageblob://a/c/one", size=MiB).close()
    with pytest.raises(DirtyMapInvalid, match="another disk"):
        DirtyMap(path, url="pageblob://a/c/two", size=MiB)
    with pytest.raises(DirtyMapInvalid, match="bytes"):
        DirtyMap(path, url="pageblob://a/c/one", size=2 * MiB)
    with pytest.raises(DirtyMapInvalid, match="blocks"):
        DirtyMap(path, url="pageblob://a/c/one", size=MiB, block_size=4 * KiB)
    assert disk_identity("pageblob://a/c/one?lease=x&snapshot=y") == disk_identity(
        "pageblob://a/c/one"
    )


def test_a_damaged_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m"
    DirtyMap(path, url="memory:x", size=MiB).close()
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DirtyMapInvalid, match="checksum"):
        DirtyMap(path, url="memory:x", size=MiB)
    path.write_bytes(b"not a map")
    with pytest.raises(DirtyMapInvalid, match="magic") as info:
        DirtyMap(path, url="memory:x", size=MiB)
    assert "DiffResync" in info.value.remedy


def test_one_tracker_per_map(tmp_path: Path) -> None:
    with DirtyMap(tmp_path / "m", url="memory:x", size=MiB), pytest.raises(DirtyMapBusy):
        DirtyMap(tmp_path / "m", url="memory:x", size=MiB)
    DirtyMap(tmp_path / "m", url="memory:x", size=MiB).close()  # free again


def test_growing_marks_the_new_region(tmp_path: Path) -> None:
    with open_tracked(_memory(MiB), tmp_path / "m") as disk:
        assert isinstance(disk, TrackedBackend)
        disk.resize(MiB + 2 * BS)
        assert disk.take() == [Extent(MiB, 2 * BS)]


class _Refusing(Backend):
    """Every write fails, as a fenced or broken disk's would."""

    def __init__(self) -> None:
        super().__init__("memory:refusing", "rw")

    def size(self) -> int:
        return MiB

    def readinto(self, offset: int, buf: bytearray | memoryview) -> int:
        return len(buf)

    def write(self, offset: int, buf: bytes | bytearray | memoryview) -> int:
        raise OSError("refused")

    def zero(self, offset: int, length: int) -> None:
        raise OSError("refused")

    def flush(self) -> None:
        pass

    def extents(self, context: str = "zero"):  # type: ignore[no-untyped-def]
        return iter([Extent(0, MiB, zero=True)])

    def close(self) -> None:
        self.closed = True


def test_marks_are_on_disk_before_the_write_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "m"
    disk = TrackedBackend(_Refusing(), DirtyMap(path, url="memory:refusing", size=MiB))
    with pytest.raises(OSError):
        disk.write(2 * BS, b"x" * 512)
    # Read the file as a crashed process would have left it: the bit is set.
    packed = np.frombuffer(path.read_bytes()[HEADER_SIZE:], np.uint8)
    bits = np.unpackbits(packed, bitorder="little")
    assert bits[2] == 1 and bits.sum() == 1
    disk.close()


def test_a_tracked_workload_and_dirty_copy_give_identical_disks(tmp_path: Path) -> None:
    size = 16 * MiB
    src_url, dst_url = _memory(size), _memory(size)
    base = os.urandom(size)
    with open_backend(src_url, "rw") as a, open_backend(dst_url, "rw") as b:
        a.write(0, base)
        b.write(0, base)
    rng = np.random.default_rng(3)
    with open_tracked(src_url, tmp_path / "src.map") as disk:
        for _ in range(200):
            length = int(rng.integers(1, 64)) * 512
            offset = int(rng.integers(0, (size - length) // 512)) * 512
            if rng.random() < 0.1:
                disk.zero(offset, length)
            else:
                disk.write(offset, rng.bytes(length))
        dirty = disk.take()
    with open_backend(src_url) as a, open_backend(dst_url, "rw") as b:
        counters = DirtyCopy(a, b, dirty).run()
        assert counters.total == sum(e.length for e in dirty) < size
        want, got = bytearray(size), bytearray(size)
        a.readinto(0, want)
        b.readinto(0, got)
    assert want == got
