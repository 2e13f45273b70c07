"""The operations as two halves joined only by messages, as a network will
join them: every message crosses a copy (no shared buffers, no shared
backends), and nothing else passes between the halves."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable, Iterator

import pytest

from vmdr.blocks import (
    BlockDigests,
    Counters,
    DataRun,
    DiffResyncSource,
    DirtyCopySource,
    DiskInfo,
    Done,
    Extent,
    FullCopySource,
    Message,
    StreamError,
    TargetWriter,
    ZeroRun,
    hash_segments,
    open_backend,
)
from vmdr.blocks.backend import Backend

BS = 64 << 10
SIZE = 40 * BS + 512


def wire(messages: Iterable[Message]) -> Iterator[Message]:
    """What a codec will do: serialise each message before the next is made."""
    for msg in messages:
        if isinstance(msg, DataRun):
            msg = DataRun(msg.offset, bytes(msg.data))
        yield pickle.loads(pickle.dumps(msg))


def contents(disk: Backend) -> bytes:
    buf = bytearray(disk.size())
    disk.readinto(0, buf)
    return bytes(buf)


def disks(align: int = 1) -> tuple[Backend, Backend]:
    q = f"&align={align}&max_write={2 * BS}" if align > 1 else ""
    src = open_backend(f"memory:?size={SIZE}{q}", "rw")
    src.write(0, os.urandom(3 * BS))
    src.write(10 * BS, bytes(BS))  # allocated zeros
    src.write(20 * BS, os.urandom(7 * BS + 512))
    src.write(SIZE - 512, os.urandom(512))
    dst = open_backend(f"memory:?size={SIZE - 5 * BS}{q}", "rw")  # smaller: grows
    dst.write(0, os.urandom(SIZE - 5 * BS))
    return src, dst


@pytest.mark.parametrize("align", [1, 512])
def test_full_copy_halves(align: int) -> None:
    src, dst = disks(align)
    source_counters, target_counters = Counters(), Counters()
    writer = TargetWriter(dst, target_counters)
    for msg in wire(FullCopySource(src, BS, source_counters).messages()):
        writer.apply(msg)
    assert writer.done and contents(dst) == contents(src)
    assert source_counters.sent == target_counters.written
    assert source_counters.sent + source_counters.skipped_zero == SIZE


@pytest.mark.parametrize("align", [1, 512])
def test_diff_resync_halves(align: int) -> None:
    src, dst = disks(align)
    dst.resize(SIZE)
    for i in range(SIZE // BS):  # make the target mostly equal, a few blocks off
        if i not in (1, 2, 21, 30):
            buf = bytearray(BS)
            src.readinto(i * BS, buf)
            dst.write(i * BS, buf)
    source = DiffResyncSource(src, BS)
    writer = TargetWriter(dst)
    # target -> source: DiskInfo first, then the target's digests
    writer.apply(pickle.loads(pickle.dumps(source.begin())))
    theirs = wire(hash_segments(dst, BS))
    for msg in wire(source.diff(theirs)):
        writer.apply(msg)
    assert contents(dst) == contents(src)
    assert source.root and writer.done
    c = source.counters
    assert c.sent + c.skipped_zero + c.skipped_equal == SIZE
    assert c.sent + c.skipped_zero <= 4 * BS + 512  # 4 changed blocks (and the tail)


def test_dirty_copy_halves_with_cleared_range() -> None:
    src, dst = disks()
    dst.resize(SIZE)
    data = contents(src)
    dst.write(0, data)
    src.write(BS, os.urandom(100))
    src.zero(20 * BS, 2 * BS)
    dirty = [Extent(BS, 100), Extent(20 * BS, 2 * BS, zero=True)]
    source = DirtyCopySource(src, dirty, BS)
    writer = TargetWriter(dst)
    for msg in wire(source.messages()):
        writer.apply(msg)
    assert contents(dst) == contents(src)
    assert source.counters.read == BS  # the cleared range was not read


def test_target_rejects_bad_streams() -> None:
    _, dst = disks()
    for stream in (
        [DataRun(0, b"x")],  # before DiskInfo
        [DiskInfo(SIZE, BS), DiskInfo(SIZE, BS)],
        [DiskInfo(SIZE, BS), ZeroRun(BS, BS), ZeroRun(0, BS)],  # not ascending
        [DiskInfo(SIZE, BS), DataRun(SIZE, b"x")],  # past the end
        [DiskInfo(SIZE, BS), Done(SIZE + 1)],
        [DiskInfo(SIZE, BS), BlockDigests.holes(0, 8, BS)],
        [DiskInfo(SIZE, BS), Done(SIZE), ZeroRun(0, 1)],
    ):
        writer = TargetWriter(dst)
        with pytest.raises(StreamError) as info:
            for msg in stream:
                writer.apply(msg)  # type: ignore[arg-type]
        assert info.value.code == "VMDR-E0212"


def test_source_rejects_digests_of_another_block_size() -> None:
    src, dst = disks()
    dst.resize(SIZE)
    source = DiffResyncSource(src, BS)
    source.begin()
    with pytest.raises(StreamError):
        list(source.diff(hash_segments(dst, 2 * BS)))


def test_verify_halves() -> None:
    from vmdr.blocks import Verify

    src, dst = disks()
    dst.resize(SIZE)
    dst.write(0, contents(src))
    same = Verify(src, None, block_size=BS).compare_with(wire(hash_segments(dst, BS)), SIZE)
    assert same.equal and same.root_a == same.root_b
    dst.write(SIZE - 1, b"\x01" if contents(src)[-1] != 1 else b"\x02")
    other = Verify(src, None, block_size=BS).compare_with(wire(hash_segments(dst, BS)), SIZE)
    assert not other.equal
    assert other.differences == [Extent(SIZE // BS * BS, SIZE % BS)]
