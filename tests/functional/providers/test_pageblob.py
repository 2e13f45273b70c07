"""The pageblob: backend against the lab's Azurite, over HTTPS."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vmdr.blocks import (
    BadURL,
    DiskNotFound,
    FullCopy,
    Misaligned,
    ReadOnlyTarget,
    Verify,
    open_backend,
)
from vmdr.lab.lab import Lab
from vmdr.lab.services import STORAGE_ACCOUNTS_FILE
from vmdr.providers.azure import pageblob
from vmdr.providers.azure.accounts import StorageAccountUnknown
from vmdr.providers.azure.blobs import blob_client
from vmdr.providers.azure.pageblob import READ_PART, PageBlobBackend

from .helpers import same_sparse_files

MiB = 1 << 20
URL = Callable[[], str]


def test_accounts_file_holds_the_key_privately(lab: Lab, account: str) -> None:
    path = lab.directory / STORAGE_ACCOUNTS_FILE
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())[account]["endpoint"].startswith("https://")


def test_lab_disk_round_trips_through_a_page_blob(lab_inventory: dict, blob_url: URL) -> None:  # type: ignore[type-arg]
    disk = lab_inventory["vms"][0]["disks"][0]
    flat = Path(disk["flat_path"])
    url = blob_url()
    with open_backend(str(flat)) as src, open_backend(url, "rw", create=True) as dst:
        counters = FullCopy(src, dst).run()
        dst.flush()
        assert counters.written == disk["data_bytes"]  # holes were not sent
        assert Verify(src, dst).run().equal
    with open_backend(url) as replica:
        assert replica.size() == flat.stat().st_size
        data = bytearray(replica.size())
        replica.readinto(0, data)  # one call: parallel ranged GETs
        extents = list(replica.extents())
    # An independent check: sha256 of the file against sha256 of what Azurite returns.
    assert hashlib.sha256(data).digest() == hashlib.sha256(flat.read_bytes()).digest()
    assert sum(e.length for e in extents if not e.zero) == disk["data_bytes"]


def test_writes_zero_and_extents(blob_url: URL) -> None:
    with open_backend(blob_url(), "rw", create=True) as disk:
        disk.resize(8 * MiB)
        payload = os.urandom(3 * MiB)
        disk.write(1 * MiB, payload)
        disk.zero(2 * MiB, 1 * MiB)
        disk.flush()
        buf = bytearray(8 * MiB)
        disk.readinto(0, buf)
        expected = bytes(MiB) + payload[:MiB] + bytes(MiB) + payload[2 * MiB :]
        assert bytes(buf[: 4 * MiB]) == expected
        assert not any(buf[4 * MiB :])
        data = [(e.start, e.length) for e in disk.extents() if not e.zero]
        assert data == [(1 * MiB, 1 * MiB), (3 * MiB, 1 * MiB)]
        with pytest.raises(Misaligned):
            disk.write(100, b"x" * 512)


def _count_calls(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> list[Any]:
    calls: list[Any] = []
    real = getattr(obj, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return calls


def test_big_reads_are_parallel_ranged_gets_into_place(
    blob_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 9 * MiB + 3 * 512  # not a multiple of the part size
    content = bytearray(os.urandom(size))
    content[4 * MiB : 6 * MiB] = bytes(2 * MiB)  # a hole inside
    url = blob_url()
    with pageblob.open_pageblob(url, "rw", create=True, size=size) as disk:
        disk.write(0, content[: 4 * MiB])
        disk.write(6 * MiB, content[6 * MiB :])
        disk.flush()
    assert PageBlobBackend.preferred_read == 4 * MiB
    with pageblob.open_pageblob(url) as disk:
        gets = _count_calls(monkeypatch, disk._raw, "download")
        listings = _count_calls(monkeypatch, disk._blob, "get_page_ranges")
        whole = bytearray(size)
        assert disk.readinto(0, whole) == size
        assert whole == content
        assert 2 <= len(gets) <= pageblob.READ_PARALLEL  # split, and no more parts than workers
        small = bytearray(READ_PART - 512)  # below the split threshold: one GET
        disk.readinto(512, small)
        assert small == content[512 : 512 + len(small)]
        assert len(gets) <= pageblob.READ_PARALLEL + 1
        tail = bytearray(1536)
        disk.readinto(size - 1536, tail)
        assert tail == content[-1536:]
        assert not listings  # the SDK's download_blob would list page ranges every time


def test_small_sequential_writes_are_combined(
    blob_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pageblob.open_pageblob(blob_url(), "rw", create=True, size=8 * MiB) as disk:
        puts = _count_calls(monkeypatch, disk._blob, "upload_page")
        data = os.urandom(6 * MiB)
        for pos in range(0, len(data), 64 << 10):
            disk.write(pos, data[pos : pos + (64 << 10)])
        disk.flush()
        assert len(puts) == 2  # 4 MiB + 2 MiB, not 96 requests
        back = bytearray(6 * MiB)
        disk.readinto(0, back)
        assert back == data


def test_create_with_a_size_and_delete(blob_url: URL) -> None:
    url = blob_url()
    assert pageblob.create(url, 3 * MiB, metadata={"vm": "web-01"})
    assert not pageblob.create(url, 5 * MiB, exist_ok=True)  # left as it was
    with pytest.raises(BadURL):
        pageblob.create(url, 3 * MiB)
    with open_backend(url) as disk:
        assert disk.size() == 3 * MiB
        assert all(e.zero for e in disk.extents())
    with pytest.raises(BadURL):
        pageblob.create(blob_url(), 1000)  # not whole pages
    assert pageblob.delete(url)
    assert not pageblob.delete(url)
    assert not pageblob.exists(url)
    with pytest.raises(DiskNotFound):
        open_backend(url)


def test_a_snapshot_url_reads_the_old_bytes_and_is_read_only(blob_url: URL) -> None:
    url = blob_url()
    old, new = os.urandom(MiB), os.urandom(MiB)
    with pageblob.open_pageblob(url, "rw", create=True, size=2 * MiB) as disk:
        disk.write(0, old)
        disk.flush()
        service, blob, _ = blob_client(url)
        with service:
            snapshot = str(blob.create_snapshot()["snapshot"])
        disk.write(0, new)
        disk.flush()
    with open_backend(f"{url}?snapshot={snapshot}") as snap:
        buf = bytearray(MiB)
        snap.readinto(0, buf)
        assert buf == old
        assert [(e.start, e.length) for e in snap.extents() if not e.zero] == [(0, MiB)]
    with pytest.raises(ReadOnlyTarget):
        open_backend(f"{url}?snapshot={snapshot}", "rw")


def test_a_sparse_1_gib_disk_round_trips(tmp_path: Path, blob_url: URL) -> None:
    src_path, back_path = tmp_path / "src.raw", tmp_path / "back.raw"
    pieces = {
        0: os.urandom(MiB),
        300 * MiB + 4096: os.urandom(2 * MiB),
        (1 << 30) - MiB: b"e" * MiB,
    }
    with open(src_path, "wb") as f:
        f.truncate(1 << 30)
        for offset, data in pieces.items():
            os.pwrite(f.fileno(), data, offset)
    url = blob_url()
    with open_backend(str(src_path)) as src, open_backend(url, "rw", create=True) as dst:
        FullCopy(src, dst).run()
        dst.flush()
        data_bytes = sum(e.length for e in dst.extents() if not e.zero)
        assert data_bytes <= 5 * MiB  # holes stayed holes in the blob
    with open_backend(url) as blob, open_backend(str(back_path), "rw", create=True) as back:
        FullCopy(blob, back).run()
        back.flush()
    assert back_path.stat().st_size == 1 << 30
    assert back_path.stat().st_blocks * 512 < 16 * MiB  # sparse on the way back too
    with open(back_path, "rb") as b:
        for offset, data in pieces.items():
            assert os.pread(b.fileno(), len(data), offset) == data
    assert same_sparse_files(src_path, back_path)


def test_bad_urls_and_missing_blobs(account: str, blob_url: URL) -> None:
    with pytest.raises(BadURL):
        open_backend(f"pageblob://{account}/only-container")
    with pytest.raises(BadURL):
        open_backend(f"{blob_url()}?colour=blue")
    with pytest.raises(DiskNotFound):
        open_backend(blob_url())
    with pytest.raises(StorageAccountUnknown) as info:
        open_backend("pageblob://nosuchaccount/c/b")
    assert info.value.code == "VMDR-E0701"
