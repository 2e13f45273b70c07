"""The process server's building blocks: outbox order and durability, trimming
for resumption, the bandwidth limiter, size parsing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from vmdr.blocks.messages import DataRun, DiskInfo, Done, ZeroRun
from vmdr.cli.settings import parse_size
from vmdr.model.errors import UsageError
from vmdr.roles.outbox import Outbox, OutboxFull
from vmdr.roles.sender import RateLimiter, trim


def test_outbox_keeps_order_and_survives_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "r1")
    for seq in (3, 1, 2):
        box.put(seq, [f"change set {seq}".encode()])
    (tmp_path / "r1" / "000000000004.tmp").write_bytes(b"half written")
    again = Outbox(tmp_path / "r1")
    assert again.pending() == [1, 2, 3]
    assert again.path(2).read_bytes() == b"change set 2"
    assert not list((tmp_path / "r1").glob("*.tmp"))
    again.remove(1)
    assert again.pending() == [2, 3]


def test_outbox_limit(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "r1", limit_bytes=10)
    box.check_room()
    box.put(1, [b"x" * 10])
    with pytest.raises(OutboxFull) as err:
        box.check_room()
    assert err.value.code == "VMDR-E0430"


def test_trim_drops_and_cuts_runs_before_resume_offset() -> None:
    msgs = [
        DiskInfo(100, 10),
        DataRun(0, b"a" * 30),
        ZeroRun(30, 20),
        DataRun(50, b"b" * 50),
        Done(100),
    ]
    out = list(trim(msgs, 60))
    assert out[0] == DiskInfo(100, 10)
    assert isinstance(out[1], DataRun)
    assert out[1].offset == 60 and bytes(out[1].data) == b"b" * 40
    assert out[2] == Done(100)
    out = list(trim(msgs, 40))
    assert out[1] == ZeroRun(40, 10)


def test_rate_limiter_holds_the_average() -> None:
    limiter = RateLimiter(4 << 20)  # 4 MiB/s
    started = time.monotonic()
    for _ in range(16):
        limiter.consume(256 << 10)  # 4 MiB in all
    elapsed = time.monotonic() - started
    # A quarter second of burst is allowed, so 4 MiB takes at least ~0.75 s.
    assert 0.7 <= elapsed < 2.0


def test_no_limit_is_free() -> None:
    limiter = RateLimiter(0)
    started = time.monotonic()
    limiter.consume(1 << 40)
    assert time.monotonic() - started < 0.1


@pytest.mark.parametrize(
    ("text", "value"), [("20M", 20 << 20), ("1G", 1 << 30), ("512", 512), ("1.5K", 1536)]
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


def test_parse_size_refuses_garbage() -> None:
    with pytest.raises(UsageError):
        parse_size("lots")
