"""Small durable files: written whole or not at all, by any number of
writers at once, and never half-written on a full drive."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from vmdr.blocks.durable import write_atomically


def test_concurrent_writers_of_one_file_all_succeed(tmp_path: Path) -> None:
    target = tmp_path / "vcenter.json"
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    barrier, errors = threading.Barrier(len(payloads)), []

    def write(data: bytes) -> None:
        barrier.wait()
        try:
            for _ in range(20):
                write_atomically(target, data)
        except Exception as exc:  # the old fixed "<name>.tmp": FileNotFoundError
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_bytes() in payloads  # one writer's whole content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vcenter.json"]  # no temporaries


def test_a_full_drive_leaves_the_old_content_and_no_temporary(
    small_drive: Callable[[int], Path],
) -> None:
    drive = small_drive(64 << 10)
    target = drive / "state.json"
    write_atomically(target, b"old")
    with pytest.raises(OSError) as err:
        write_atomically(target, b"x" * (256 << 10))
    assert err.value.errno == 28  # ENOSPC, not a silent short file
    assert target.read_bytes() == b"old"
    assert [p.name for p in drive.iterdir()] == ["state.json"]
    assert target.stat().st_mode & 0o777 == 0o600
