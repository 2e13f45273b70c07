"""A master target writes only inside its datastore roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmdr.roles.datastores import DatastoreRoots, PathRefused, UnknownDatastore


@pytest.fixture
def roots(tmp_path: Path) -> DatastoreRoots:
    (tmp_path / "ds1").mkdir()
    (tmp_path / "outside").mkdir()
    return DatastoreRoots({"ds1": tmp_path / "ds1"})


def test_accepts_plain_and_vsphere_notation(roots: DatastoreRoots, tmp_path: Path) -> None:
    a = roots.resolve("ds1", "web-01/web-01-flat.vmdk")
    b = roots.resolve(None, "[ds1] web-01/web-01-flat.vmdk")
    assert a.file == b.file == (tmp_path / "ds1/web-01/web-01-flat.vmdk").resolve()
    assert str(b) == "[ds1] web-01/web-01-flat.vmdk"


@pytest.mark.parametrize(
    "path",
    [
        "../outside/x.vmdk",
        "web/../../outside/x.vmdk",
        "/etc/passwd",
        "web//x.vmdk",
        "web/./x.vmdk",
        "web/x.txt",
        "web/.hidden.vmdk",
        "web/x\x00.vmdk",
        "",
    ],
)
def test_refuses_paths_that_leave_or_are_odd(roots: DatastoreRoots, path: str) -> None:
    with pytest.raises(PathRefused) as err:
        roots.resolve("ds1", path)
    assert err.value.code == "VMDR-E0420"
    assert err.value.http_status == 403


def test_refuses_symlink_out_of_the_root(roots: DatastoreRoots, tmp_path: Path) -> None:
    os.symlink(tmp_path / "outside", tmp_path / "ds1/escape")
    with pytest.raises(PathRefused):
        roots.resolve("ds1", "escape/x.vmdk")


def test_refuses_a_descriptor_whose_extent_is_elsewhere(
    roots: DatastoreRoots, tmp_path: Path
) -> None:
    flat = tmp_path / "outside/victim-flat.vmdk"
    flat.write_bytes(b"\0" * 4096)
    (tmp_path / "ds1/web").mkdir()
    # The extent is named beside the descriptor, but that name is a symlink out.
    os.symlink(flat, tmp_path / "ds1/web/web-flat.vmdk")
    (tmp_path / "ds1/web/web.vmdk").write_text(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
        'createType="monolithicFlat"\n'
        'RW 8 FLAT "web-flat.vmdk" 0\n'
    )
    where = roots.resolve("ds1", "web/web.vmdk")
    with pytest.raises(PathRefused) as err:
        roots.open(where)
    assert "outside the datastore" in err.value.message
    assert flat.read_bytes() == b"\0" * 4096


def test_unknown_datastore(roots: DatastoreRoots) -> None:
    with pytest.raises(UnknownDatastore) as err:
        roots.resolve("nfs-9", "a.vmdk")
    assert err.value.code == "VMDR-E0421"


def test_open_creates_sparse_disk_inside(roots: DatastoreRoots, tmp_path: Path) -> None:
    where = roots.resolve("ds1", "new/disk-flat.vmdk")
    with roots.open(where, size=1 << 20) as disk:
        assert disk.size() == 1 << 20
    assert (tmp_path / "ds1/new/disk-flat.vmdk").stat().st_blocks == 0
