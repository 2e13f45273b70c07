"""Property tests: random write patterns on source and target, then each
operation; the target must then read exactly like the source (checked with
plain reads and hashlib, not the engine's digests)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmdr.blocks import (
    Backend,
    DiffResync,
    DirtyCopy,
    Extent,
    FullCopy,
    Verify,
    open_backend,
)

BS = 4096  # small blocks: many blocks in small disks
Write = tuple[int, int, int]  # offset, length, byte (0 = zero the range)

writes = st.lists(
    st.tuples(st.integers(0, 40 * BS), st.integers(1, 3 * BS), st.integers(0, 255)),
    max_size=8,
)
sizes = st.integers(1, 40 * BS)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def apply(disk: Backend, ops: list[Write]) -> list[Extent]:
    """Apply writes (clipped to the disk); return the ranges touched."""
    touched = []
    size = disk.size()
    for offset, length, byte in ops:
        if offset >= size:
            continue
        length = min(length, size - offset)
        if byte:
            disk.write(offset, bytes([byte]) * length)
        else:
            disk.zero(offset, length)
        touched.append(Extent(offset, length))
    return touched


def digest(disk: Backend) -> str:
    buf = bytearray(disk.size())
    disk.readinto(0, buf)
    return hashlib.sha256(buf).hexdigest()


@contextmanager
def pair(kind: str, src_size: int, dst_size: int) -> Iterator[tuple[Backend, Backend]]:
    if kind == "memory":
        with (
            open_backend(f"memory:?size={src_size}", "rw") as s,
            open_backend(f"memory:?size={dst_size}", "rw") as d,
        ):
            yield s, d
        return
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a.img", Path(tmp) / "b.img"
        a.write_bytes(b"")
        b.write_bytes(b"")
        with open_backend(str(a), "rw") as s, open_backend(str(b), "rw") as d:
            s.resize(src_size)
            d.resize(dst_size)
            yield s, d
            # independent check on the files themselves
            s.flush()
            d.flush()
        assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


@SETTINGS
@given(
    kind=st.sampled_from(["memory", "file"]),
    size=sizes,
    shrink=st.integers(0, 10 * BS),
    src_ops=writes,
    dst_ops=writes,
    op=st.sampled_from(["copy", "resync"]),
)
def test_copy_and_resync_make_target_equal(
    kind: str, size: int, shrink: int, src_ops: list[Write], dst_ops: list[Write], op: str
) -> None:
    with pair(kind, size, max(0, size - shrink)) as (src, dst):
        apply(src, src_ops)
        apply(dst, dst_ops)
        run = (
            FullCopy(src, dst, block_size=BS)
            if op == "copy"
            else DiffResync(src, dst, block_size=BS)
        )
        c = run.run()
        assert digest(dst) == digest(src)
        assert c.sent + c.skipped_zero + c.skipped_equal == size
        assert Verify(src, dst, block_size=BS).run().equal


@SETTINGS
@given(
    kind=st.sampled_from(["memory", "file"]),
    size=sizes,
    base=writes,
    changes=writes,
    as_bitmap=st.booleans(),
)
def test_dirty_copy_with_a_true_dirty_map(
    kind: str, size: int, base: list[Write], changes: list[Write], as_bitmap: bool
) -> None:
    with pair(kind, size, size) as (src, dst):
        apply(src, base)
        FullCopy(src, dst, block_size=BS).run()
        touched = apply(src, changes)
        dirty: list[Extent] | np.ndarray = touched
        if as_bitmap:
            bits = np.zeros(-(-size // BS), dtype=bool)
            for e in touched:
                bits[e.start // BS : -(-e.end // BS)] = True
            dirty = bits
        c = DirtyCopy(src, dst, dirty, block_size=BS).run()
        assert digest(dst) == digest(src)
        assert c.sent + c.skipped_zero + c.skipped_equal == size


@SETTINGS
@given(size=sizes, ops=writes, flip=st.integers(0, 40 * BS - 1))
def test_verify_finds_a_single_changed_byte(size: int, ops: list[Write], flip: int) -> None:
    with pair("memory", size, size) as (a, b):
        apply(a, ops)
        FullCopy(a, b, block_size=BS).run()
        assert Verify(a, b, block_size=BS).run().equal
        flip %= size
        buf = bytearray(1)
        b.readinto(flip, buf)
        b.write(flip, bytes([buf[0] ^ 0x5A]))
        result = Verify(a, b, block_size=BS).run()
        assert not result.equal
        assert result.differences == [Extent(flip // BS * BS, min(BS, size - flip // BS * BS))]


@SETTINGS
@given(
    kind=st.sampled_from(["memory", "file"]),
    size=sizes,
    shrink=st.integers(0, 10 * BS),
    src_ops=writes,
    dst_ops=writes,
)
def test_the_transfer_plan_predicts_what_the_resync_moves(
    kind: str, size: int, shrink: int, src_ops: list[Write], dst_ops: list[Write]
) -> None:
    """``resync_bytes`` (the plan shown before reprotect) equals the bytes
    the resync then writes or zeroes, to the byte."""
    from vmdr.blocks.hashing import resync_bytes

    with pair(kind, size, max(0, size - shrink)) as (src, dst):
        apply(src, src_ops)
        apply(dst, dst_ops)
        planned = resync_bytes(src, dst, block_size=BS)
        c = DiffResync(src, dst, block_size=BS).run()
        assert planned == c.written + c.zeroed
