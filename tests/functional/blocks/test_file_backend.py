"""What is particular to the file backend: holes, punching, VMDK
descriptors, and the errors a user meets with bad paths."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vmdr.blocks import (
    BadDescriptor,
    BadURL,
    DiskNotFound,
    Extent,
    FullCopy,
    OutOfRange,
    ReadOnlyTarget,
    UnknownScheme,
    Unsupported,
    open_backend,
)

from .helpers import MiB, allocated, make_file, same_bytes, write_descriptor


def test_holes_are_zero_extents(tmp_path: Path) -> None:
    path = make_file(tmp_path / "d.img", 8 * MiB, [(MiB, b"x" * 4096), (5 * MiB, b"y" * MiB)])
    with open_backend(str(path)) as disk:
        extents = list(disk.extents())
    data = [e for e in extents if not e.zero]
    assert sum(e.length for e in data) < 2 * MiB  # only the written parts (fs blocks)
    assert any(e.start <= MiB < e.end for e in data)
    assert extents[0] == Extent(0, extents[0].length, zero=True)


def test_zero_punches_a_hole(tmp_path: Path) -> None:
    path = make_file(tmp_path / "d.img", 4 * MiB, [(0, os.urandom(4 * MiB))])
    before = allocated(path)
    with open_backend(str(path), "rw") as disk:
        disk.zero(MiB, 2 * MiB)
        disk.flush()
    assert allocated(path) <= before - 2 * MiB
    assert path.read_bytes()[MiB : 3 * MiB] == bytes(2 * MiB)


def test_plain_path_file_url_and_colon_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_file(tmp_path / "disk:1.img", MiB, [(0, b"abc")])
    for url in (str(path), path.as_uri()):
        with open_backend(url) as disk:
            assert disk.size() == MiB
    monkeypatch.chdir(tmp_path)
    with open_backend("disk:1.img") as disk:  # exists: a path, not a scheme
        assert disk.size() == MiB


def test_missing_file_and_unknown_scheme(tmp_path: Path) -> None:
    with pytest.raises(DiskNotFound) as info:
        open_backend(str(tmp_path / "nope.img"))
    assert info.value.code == "VMDR-E0203"
    with pytest.raises(UnknownScheme):
        open_backend("nbd://localhost/disk")
    with pytest.raises(BadURL):
        open_backend(str(tmp_path))  # a directory


def test_create_makes_an_empty_disk(tmp_path: Path) -> None:
    with open_backend(str(tmp_path / "new.img"), "rw", create=True) as disk:
        assert disk.size() == 0


@pytest.fixture
def immutable(tmp_path: Path, small_drive: Any) -> Iterator[Path]:
    """A file its writer cannot write: mode 0444 for a user; for root (who
    writes any mode), a file on a file system mounted read-only (EROFS)."""
    if os.geteuid() != 0:
        path = make_file(tmp_path / "ro.img", MiB)
        path.chmod(0o444)
        yield path
        return
    drive = small_drive(4 * MiB)
    path = make_file(drive / "ro.img", MiB)
    done = subprocess.run(["mount", "-o", "remount,ro", str(drive)], capture_output=True, text=True)
    assert done.returncode == 0, f"cannot remount read-only: {done.stderr}"
    yield path


def test_read_only_target_file(immutable: Path, tmp_path: Path) -> None:
    src = make_file(tmp_path / "src.img", MiB, [(0, b"data")])
    with pytest.raises(ReadOnlyTarget) as info:
        open_backend(str(immutable), "rw")
    assert info.value.code == "VMDR-E0204"
    with open_backend(str(immutable)) as disk:  # reading is fine
        assert disk.size() == MiB
    assert not same_bytes(src, immutable)


def test_descriptor_opens_its_flat_extent(tmp_path: Path) -> None:
    flat = make_file(tmp_path / "vm-flat.vmdk", 2 * MiB, [(0, b"boot")])
    desc = write_descriptor(tmp_path, "vm.vmdk", 2 * MiB)
    src = make_file(tmp_path / "src.img", 2 * MiB, [(MiB, os.urandom(MiB))])
    with open_backend(str(src)) as s, open_backend(desc.as_uri(), "rw") as d:
        assert d.size() == 2 * MiB
        FullCopy(s, d).run()
    assert same_bytes(src, flat)
    assert desc.read_text().startswith("# Disk DescriptorFile")  # untouched
    with open_backend(str(flat)) as raw:  # the -flat.vmdk alone is just raw
        assert raw.size() == 2 * MiB


def test_descriptor_size_is_the_disk_size(tmp_path: Path) -> None:
    make_file(tmp_path / "vm-flat.vmdk", 3 * MiB)
    desc = write_descriptor(tmp_path, "vm.vmdk", 2 * MiB)
    with open_backend(str(desc)) as disk:
        assert disk.size() == 2 * MiB
    write_descriptor(tmp_path, "short.vmdk", 4 * MiB, extent="vm-flat.vmdk")
    with pytest.raises(BadDescriptor):
        open_backend(str(tmp_path / "short.vmdk"))


def test_descriptor_cannot_reach_outside_its_folder(tmp_path: Path) -> None:
    outside = make_file(tmp_path / "secret.img", MiB)
    folder = tmp_path / "vm"
    folder.mkdir()
    for name in (str(outside), "../secret.img"):
        desc = write_descriptor(folder, "vm.vmdk", MiB, extent=name)
        with pytest.raises(BadDescriptor) as info:
            open_backend(str(desc), "rw")
        assert info.value.code == "VMDR-E0207"


def test_descriptor_naming_a_missing_extent(tmp_path: Path) -> None:
    desc = write_descriptor(tmp_path, "vm.vmdk", MiB)
    with pytest.raises(DiskNotFound) as info:
        open_backend(str(desc))
    assert "vm-flat.vmdk" in info.value.message


def test_sparse_vmdk_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sparse.vmdk"
    path.write_bytes(b"KDMV" + bytes(508))
    with pytest.raises(BadDescriptor):
        open_backend(str(path))


def test_map_read_lends_the_bytes_readinto_reads(tmp_path: Path) -> None:
    """Mapped reads (what hashing workers use) see the file's bytes, holes as
    zeros, up to an unaligned end; outside the disk they refuse like reads."""
    size = 3 * MiB + 1000
    path = make_file(tmp_path / "d.img", size, [(4096, os.urandom(MiB)), (size - 700, b"x" * 700)])
    expected = path.read_bytes()
    with open_backend(str(path)) as disk:
        assert disk.mappable
        with disk.map_read(0, size) as view:
            assert view.readonly and bytes(view) == expected
        with disk.map_read(2 * MiB, size - 2 * MiB) as view:
            assert bytes(view) == expected[2 * MiB :]
        with disk.map_read(4096 + 1000, 5000) as view:  # not page aligned
            assert bytes(view) == expected[5096:10096]
        with disk.map_read(MiB, 0) as view:
            assert len(view) == 0
        with pytest.raises(OutOfRange), disk.map_read(2 * MiB, MiB + 1001):
            pass


def test_map_read_keeps_the_error_that_matters(tmp_path: Path) -> None:
    """An error raised while a numpy array still holds the mapped view must
    come out as itself, not as the BufferError of closing the mapping."""
    path = make_file(tmp_path / "d.img", MiB, [(0, os.urandom(MiB))])
    held = []
    with (
        open_backend(str(path)) as disk,
        pytest.raises(KeyError),
        disk.map_read(0, MiB) as view,
    ):
        held.append(np.frombuffer(view, dtype=np.uint8))
        raise KeyError("the real error")


def test_a_file_system_that_cannot_map_is_read_through_a_buffer(tmp_path: Path) -> None:
    path = make_file(tmp_path / "d.img", MiB, [(8192, os.urandom(8192))])
    with open_backend(str(path)) as disk:
        disk.mappable = False  # as after mmap failed with ENODEV (some FUSE mounts)
        with disk.map_read(4096, 16384) as view:
            assert bytes(view) == path.read_bytes()[4096:20480]


def test_backends_that_cannot_map_say_so(tmp_path: Path) -> None:
    with open_backend("memory:?size=65536", "rw") as disk:
        assert not disk.mappable
        with pytest.raises(Unsupported), disk.map_read(0, 4096):
            pass


@pytest.fixture
def writeback_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """Every sync_file_range the file backend makes (still made for real)."""
    from vmdr.blocks import file as file_module

    real = file_module._sync_file_range
    if real is None:
        pytest.fail("this libc has no sync_file_range; write-behind cannot be tested")
    calls: list[tuple[int, int, int]] = []

    def record(fd: int, offset: int, length: int, flags: int) -> int:
        calls.append((offset, length, flags))
        return int(real(fd, offset, length, flags))

    monkeypatch.setattr(file_module, "_sync_file_range", record)
    return calls


def test_sequential_writes_start_writeback_and_wait_for_the_window_before(
    tmp_path: Path, writeback_calls: list[tuple[int, int, int]]
) -> None:
    from vmdr.blocks.file import FileBackend

    path = make_file(tmp_path / "d.img", 16 * MiB, [])
    data = np.random.default_rng(1).bytes(12 * MiB)
    fd = os.open(path, os.O_RDWR)
    with FileBackend(f"file:{path}", "rw", fd, write_behind=4 * MiB) as disk:
        for pos in range(0, len(data), MiB):
            disk.write(pos, data[pos : pos + MiB])
        write, wait = 0x2, 0x1 | 0x2
        assert writeback_calls == [
            (0, 4 * MiB, write),
            (4 * MiB, 4 * MiB, write),
            (0, 4 * MiB, wait),
            (8 * MiB, 4 * MiB, write),
            (4 * MiB, 4 * MiB, wait),
        ]
        disk.flush()
    assert path.read_bytes()[: len(data)] == data


def test_scattered_writes_start_writeback_every_2_mib_without_waiting(
    tmp_path: Path, writeback_calls: list[tuple[int, int, int]]
) -> None:
    """A resync writes differing blocks here and there: their writeback starts
    while hashing goes on, so the fsync at the end has little left."""
    from vmdr.blocks.file import FileBackend

    path = make_file(tmp_path / "d.img", 16 * MiB, [])
    block, stride = 64 << 10, 256 << 10
    rng = np.random.default_rng(2)
    written = {i * stride: rng.bytes(block) for i in range(40)}  # 2.5 MiB
    fd = os.open(path, os.O_RDWR)
    with FileBackend(f"file:{path}", "rw", fd) as disk:
        for offset, payload in written.items():
            disk.write(offset, payload)
        # One kick after 32 blocks (2 MiB), spanning them, and no wait.
        assert writeback_calls == [(0, 31 * stride + block, 0x2)]
        disk.flush()
    with open(path, "rb") as f:
        assert all(os.pread(f.fileno(), block, o) == p for o, p in written.items())
