"""The backend contract, run against every backend kind (conftest.KINDS)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from vmdr.blocks import (
    Backend,
    Extent,
    Misaligned,
    OutOfRange,
    ReadOnlyTarget,
    Unsupported,
    open_backend,
)

from .conftest import Kind

Open = Callable[[int], Backend]
SIZE = 3 << 20  # three 1 MiB regions; sizes and offsets are multiples of 512


def read(backend: Backend, offset: int, length: int) -> bytes:
    buf = bytearray(length)
    assert backend.readinto(offset, buf) == length
    return bytes(buf)


def check_extents(backend: Backend) -> list[Extent]:
    extents = list(backend.extents())
    pos = 0
    for ext in extents:
        assert isinstance(ext, Extent)
        assert ext.start == pos and ext.length > 0
        assert Extent.from_dict(ext.to_dict()) == ext
        pos = ext.end
    assert pos == backend.size()
    for ext in extents:  # zero extents read as zeros
        if ext.zero:
            assert not any(read(backend, ext.start, ext.length))
    return extents


def test_new_disk_reads_zeros_and_has_its_size(open_disk: Open) -> None:
    disk = open_disk(SIZE)
    assert disk.size() == SIZE
    assert read(disk, 0, SIZE) == bytes(SIZE)
    check_extents(disk)


def test_advertises_sane_limits(open_disk: Open) -> None:
    disk = open_disk(SIZE)
    align = disk.block_alignment
    assert align >= 1 and align & (align - 1) == 0
    assert disk.max_write >= align and disk.max_write % align == 0


@pytest.mark.parametrize(
    "offset,length", [(0, 512), (65536 - 512, 1024), (1 << 20, 1 << 20), (SIZE - 4096, 4096)]
)
def test_write_then_read_back(open_disk: Open, offset: int, length: int) -> None:
    disk = open_disk(SIZE)
    data = os.urandom(length)
    assert disk.write(offset, data) == length
    assert read(disk, offset, length) == data
    whole = read(disk, 0, SIZE)
    assert whole[:offset] == bytes(offset) and whole[offset + length :] == bytes(
        SIZE - offset - length
    )
    extents = check_extents(disk)
    data = sum(
        min(e.end, offset + length) - max(e.start, offset)
        for e in extents
        if not e.zero and e.end > offset and e.start < offset + length
    )
    assert data == length, "written data must lie in data extents"


def test_accepts_memoryview_and_bytearray(open_disk: Open) -> None:
    disk = open_disk(SIZE)
    data = bytearray(os.urandom(8192))
    disk.write(4096, memoryview(data)[:4096])
    disk.write(8192, data[4096:])
    assert read(disk, 4096, 8192) == bytes(data)


def test_zero_makes_range_read_zeros(open_disk: Open) -> None:
    disk = open_disk(SIZE)
    data = os.urandom(SIZE)
    disk.write(0, data)
    disk.zero(512 * 3, 200 * 1024)  # unaligned to 4K and to 64K
    disk.zero(1 << 20, 1 << 20)  # whole aligned MiB: a hole where the backend can
    got = read(disk, 0, SIZE)
    assert got[: 512 * 3] == data[: 512 * 3]
    assert got[512 * 3 : 512 * 3 + 200 * 1024] == bytes(200 * 1024)
    assert got[512 * 3 + 200 * 1024 : 1 << 20] == data[512 * 3 + 200 * 1024 : 1 << 20]
    assert got[1 << 20 : 2 << 20] == bytes(1 << 20)
    assert got[2 << 20 :] == data[2 << 20 :]
    zero = [e for e in check_extents(disk) if e.zero]
    assert any(e.start <= (1 << 20) + 65536 and e.end >= (2 << 20) - 65536 for e in zero)


def test_requests_outside_the_disk_are_refused(open_disk: Open) -> None:
    disk = open_disk(SIZE)
    with pytest.raises(OutOfRange) as info:
        disk.readinto(SIZE - 512, bytearray(1024))
    assert info.value.code == "VMDR-E0208"
    with pytest.raises(OutOfRange):
        disk.write(SIZE, b"x" * 512)
    with pytest.raises(OutOfRange):
        disk.zero(-512, 512)
    assert disk.size() == SIZE  # writes never extend a disk


def test_misaligned_requests_are_refused_where_alignment_is_required(open_disk: Open) -> None:
    disk = open_disk(SIZE)
    if disk.block_alignment == 1:
        disk.write(1, b"x")  # any offset works
        assert read(disk, 0, 2) == b"\0x"
        return
    with pytest.raises(Misaligned) as info:
        disk.write(1, b"x" * disk.block_alignment)
    assert info.value.code == "VMDR-E0209"
    with pytest.raises(Misaligned):
        disk.zero(0, disk.block_alignment + 1)


def test_resize(open_disk: Open, kind: Kind) -> None:
    disk = open_disk(SIZE)
    if not kind.resizable:
        with pytest.raises(Unsupported):
            disk.resize(2 * SIZE)
        return
    disk.write(SIZE - 512, b"\xff" * 512)
    disk.resize(2 * SIZE)
    assert disk.size() == 2 * SIZE
    assert read(disk, SIZE - 512, 1024) == b"\xff" * 512 + bytes(512)
    disk.resize(SIZE - 1024)
    disk.resize(SIZE)
    assert read(disk, SIZE - 2048, 2048) == bytes(2048)
    check_extents(disk)


def test_unknown_extent_context_is_unsupported(open_disk: Open) -> None:
    disk = open_disk(SIZE)
    with pytest.raises(Unsupported) as info:
        list(disk.extents("dirty"))
    assert info.value.code == "VMDR-E0211"


def test_flush_close_and_context_manager(open_disk: Open) -> None:
    disk = open_disk(SIZE)
    disk.write(0, b"a" * 512)
    disk.flush()
    with disk as same:
        assert same is disk
    assert disk.closed
    disk.close()  # closing twice is fine


def test_read_only_disk_refuses_writes(tmp_path: os.PathLike[str], kind: Kind) -> None:
    disk = kind.open(__import__("pathlib").Path(tmp_path), SIZE)
    try:
        url = disk.url
        disk.write(0, b"z" * 512)
        disk.flush()
    finally:
        disk.close()
    if url.startswith("memory:"):
        ro = open_backend(f"memory:?size={SIZE}", "r")
    else:
        ro = open_backend(url, "r")
    with ro:
        for call in (
            lambda: ro.write(0, b"y" * 512),
            lambda: ro.zero(0, 512),
            lambda: ro.resize(SIZE * 2),
        ):
            with pytest.raises((ReadOnlyTarget, Unsupported)) as info:
                call()
            if isinstance(info.value, ReadOnlyTarget):
                assert info.value.code == "VMDR-E0204"
