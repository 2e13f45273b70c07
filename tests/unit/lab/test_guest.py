"""The lab's guest writer: the bytes land, and a tracked disk's change log
gets one whole line per write, after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmdr.lab import guest


def test_an_untracked_disk_gets_the_bytes_and_no_log(tmp_path: Path) -> None:
    flat = tmp_path / "web-01-flat.vmdk"
    flat.write_bytes(bytes(4096))
    guest.write(flat, 100, b"hello")
    assert flat.read_bytes()[100:105] == b"hello"
    assert not (tmp_path / "web-01-ctk.log").exists()


def test_a_tracked_disk_records_each_write_after_the_header(tmp_path: Path) -> None:
    flat = tmp_path / "web-01_1-flat.vmdk"
    flat.write_bytes(bytes(8192))
    log = tmp_path / "web-01_1-ctk.log"
    log.write_text("vmdr-ctk 52 aa-bb\n")  # what the simulator starts
    guest.write(str(flat), 0, b"a" * 10)
    guest.write(flat, 5000, b"b" * 3000)
    assert log.read_text() == "vmdr-ctk 52 aa-bb\n0 10\n5000 3000\n"
    assert flat.read_bytes()[5000:8000] == b"b" * 3000


@pytest.mark.parametrize(("offset", "data"), [(-1, b"x"), (0, b"")])
def test_a_write_without_place_or_bytes_is_refused(
    tmp_path: Path, offset: int, data: bytes
) -> None:
    flat = tmp_path / "d-flat.vmdk"
    flat.write_bytes(bytes(10))
    with pytest.raises(ValueError):
        guest.write(flat, offset, data)
