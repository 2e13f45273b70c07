"""Fixed VHD export and import, checked by qemu-img (an independent reader
and writer of the format), with files, a lab VM's flat VMDK and page blobs."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vmdr.blocks import FullCopy, open_backend
from vmdr.providers.azure import vhd
from vmdr.providers.azure.errors import VhdInvalid, VhdSizeNotAccepted

from .helpers import same_sparse_files

MiB, GiB = 1 << 20, 1 << 30
URL = Callable[[], str]


def qemu_info(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["qemu-img", "info", "-f", "vpc", "--output=json", str(path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    info: dict[str, Any] = json.loads(out.stdout)
    return info


def sparse_disk(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset in (0, size // 3 + 4096, size - MiB):
            os.pwrite(f.fileno(), os.urandom(MiB), offset)
    return path


def test_a_1_gib_sparse_disk_exports_to_a_vhd_qemu_reads_exactly(tmp_path: Path) -> None:
    raw = sparse_disk(tmp_path / "disk.raw", GiB)
    out = tmp_path / "disk.vhd"
    footer = vhd.export_vhd(str(raw), str(out))
    assert footer.current_size == GiB
    assert out.stat().st_size == GiB + 512
    assert out.stat().st_blocks * 512 < 8 * MiB  # holes stayed holes
    info = qemu_info(out)
    assert info["format"] == "vpc" and info["virtual-size"] == GiB
    compare = subprocess.run(
        ["qemu-img", "compare", "-f", "raw", "-F", "vpc", str(raw), str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert compare.returncode == 0, compare.stdout + compare.stderr

    back = tmp_path / "back.raw"
    assert vhd.import_vhd(str(out), str(back)).unique_id == footer.unique_id
    assert same_sparse_files(raw, back)


def test_a_vhd_made_by_qemu_imports_byte_identical(tmp_path: Path) -> None:
    raw = sparse_disk(tmp_path / "disk.raw", 256 * MiB)
    made = tmp_path / "qemu.vhd"
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size",
         str(raw), str(made)],
        check=True,
    )  # fmt: skip
    back = tmp_path / "back.raw"
    assert vhd.import_vhd(str(made), str(back)).current_size == 256 * MiB
    assert same_sparse_files(raw, back)


def test_a_lab_vm_flat_vmdk_goes_to_vhd_and_back(lab_inventory: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    disk = lab_inventory["vms"][0]["disks"][1]
    flat = Path(disk["flat_path"])
    descriptor = flat.with_name(flat.name.replace("-flat.vmdk", ".vmdk"))
    assert descriptor.exists()
    out = tmp_path / "web-01_1.vhd"
    vhd.export_vhd(str(descriptor), str(out))  # through the descriptor, as vmdr opens VMDKs
    assert qemu_info(out)["virtual-size"] == disk["capacity"]
    back = tmp_path / "back.raw"
    vhd.import_vhd(str(out), str(back))
    assert same_sparse_files(flat, back)


def test_a_vhd_in_a_page_blob_round_trips(tmp_path: Path, blob_url: URL) -> None:
    raw = sparse_disk(tmp_path / "disk.raw", 64 * MiB)
    url = blob_url()
    vhd.export_vhd(str(raw), url)  # what Azure imports a managed disk from
    with open_backend(url) as blob:
        assert blob.size() == 64 * MiB + 512
        assert vhd.read_footer(blob).current_size == 64 * MiB
        inner = vhd.virtual_disk(blob)
        assert inner.size() == 64 * MiB
        assert [e for e in inner.extents() if e.end > 64 * MiB] == []
    back = tmp_path / "back.raw"
    vhd.import_vhd(url, str(back))
    assert same_sparse_files(raw, back)

    # A replica written raw becomes importable in place, just before a failover.
    replica = blob_url()
    with open_backend(str(raw)) as src, open_backend(replica, "rw", create=True) as dst:
        FullCopy(src, dst).run()
        vhd.append_footer(dst)
        assert dst.size() == 64 * MiB + 512
    with open_backend(replica) as blob:
        buf = bytearray(512)
        blob.readinto(64 * MiB, buf)
        assert buf[:8] == b"conectix"


def test_sizes_azure_refuses_and_padding(tmp_path: Path) -> None:
    odd = tmp_path / "odd.raw"
    with open(odd, "wb") as f:
        f.truncate(MiB + 512)
        os.pwrite(f.fileno(), b"\x01" * 512, MiB)
    with pytest.raises(VhdSizeNotAccepted) as info:
        vhd.export_vhd(str(odd), str(tmp_path / "odd.vhd"))
    assert info.value.code == "VMDR-E0721" and "pad" in info.value.remedy
    vhd.export_vhd(str(odd), str(tmp_path / "odd.vhd"), pad=True)
    assert qemu_info(tmp_path / "odd.vhd")["virtual-size"] == 2 * MiB
    vhd.import_vhd(str(tmp_path / "odd.vhd"), str(tmp_path / "back.raw"))
    back = (tmp_path / "back.raw").read_bytes()
    assert len(back) == 2 * MiB and back[: MiB + 512] == odd.read_bytes()
    assert not any(back[MiB + 512 :])


def test_dynamic_and_broken_vhds_are_refused(tmp_path: Path) -> None:
    dynamic = tmp_path / "dynamic.vhd"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=dynamic", str(dynamic), "64M"],
        check=True,
    )  # fmt: skip
    with pytest.raises(VhdInvalid, match="dynamic"):
        vhd.import_vhd(str(dynamic), str(tmp_path / "x.raw"))
    raw = sparse_disk(tmp_path / "plain.raw", 4 * MiB)
    with pytest.raises(VhdInvalid, match="conectix"):
        vhd.import_vhd(str(raw), str(tmp_path / "y.raw"))
    grown = tmp_path / "grown.vhd"
    vhd.export_vhd(str(raw), str(grown))
    with open(grown, "r+b") as f:  # someone appended to it: the footer no longer fits
        f.seek(0, os.SEEK_END)
        f.write(bytes(512))
    with pytest.raises(VhdInvalid):
        vhd.import_vhd(str(grown), str(tmp_path / "z.raw"))
