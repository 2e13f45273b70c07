"""Backend kinds every conformance and operation test runs against.

A new backend (the page blob on Azurite) joins by adding a ``Kind`` here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vmdr.blocks import Backend, open_backend

from .helpers import make_file, write_descriptor


@dataclass(frozen=True)
class Kind:
    name: str
    open: Callable[[Path, int], Backend]  # (empty folder, size) -> a zeroed disk, opened rw
    resizable: bool = True
    shareable: bool = False


def _memory(folder: Path, size: int) -> Backend:
    return open_backend(f"memory:?size={size}", "rw")


def _memory_pageblob_like(folder: Path, size: int) -> Backend:
    return open_backend(f"memory:?size={size}&align=512&max_write={4 << 20}", "rw")


def _file(folder: Path, size: int) -> Backend:
    return open_backend(str(make_file(folder / "disk.raw", size)), "rw")


def _file_url(folder: Path, size: int) -> Backend:
    return open_backend((make_file(folder / "disk.img", size)).as_uri(), "rw")


def _vmdk(folder: Path, size: int) -> Backend:
    make_file(folder / "vm-flat.vmdk", size)
    return open_backend(str(write_descriptor(folder, "vm.vmdk", size)), "rw")


def _pageblob(folder: Path, size: int) -> Backend:
    # The `account` fixture (tests/conftest.py) has pointed VMDR_STORAGE_ACCOUNTS
    # at the lab's Azurite; each disk is a fresh blob.
    url = f"pageblob://{os.environ['VMDR_TEST_ACCOUNT']}/conformance/{uuid.uuid4().hex}"
    backend = open_backend(url, "rw", create=True)
    backend.resize(size)
    return backend


KINDS = [
    Kind("memory", _memory),
    Kind("memory-align512", _memory_pageblob_like),
    Kind("file", _file, shareable=True),
    Kind("file-url", _file_url, shareable=True),
    Kind("vmdk-descriptor", _vmdk, resizable=False, shareable=True),
    Kind("pageblob", _pageblob, shareable=True),
]


@pytest.fixture(params=KINDS, ids=[k.name for k in KINDS])
def kind(request: pytest.FixtureRequest) -> Kind:
    kind: Kind = request.param
    return kind


@pytest.fixture
def open_disk(
    kind: Kind, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[int], Backend]]:
    """Open a zeroed disk of the parametrised kind; closed after the test."""
    if kind.name == "pageblob":  # only this kind needs the lab's Azurite
        os.environ["VMDR_TEST_ACCOUNT"] = request.getfixturevalue("account")
    opened: list[Backend] = []
    count = 0

    def make(size: int) -> Backend:
        nonlocal count
        count += 1
        folder = tmp_path / f"d{count}"
        folder.mkdir()
        backend = kind.open(folder, size)
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        backend.close()
