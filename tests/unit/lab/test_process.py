from __future__ import annotations

import socket
import sys
from pathlib import Path

from vmdr.lab import process


def test_stop_refuses_a_pid_whose_start_time_changed(tmp_path: Path) -> None:
    record = process.spawn([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "l")
    try:
        impostor = process.ProcessRecord(record.pid, record.start_time + 1)
        assert process.is_alive(record)
        assert not process.is_alive(impostor)
        assert process.stop(impostor) is False
        assert process.is_alive(record)  # the real process was not signalled
    finally:
        assert process.stop(record) is True
    assert not process.is_alive(record)


def test_exited_child_counts_as_dead_and_wait_says_why(tmp_path: Path) -> None:
    record = process.spawn([sys.executable, "-c", "raise SystemExit(7)"], tmp_path / "l")
    why = process.wait_until(lambda: False, record, timeout=10)
    assert why == "exited with status 7"
    assert not process.is_alive(record)


def test_output_goes_to_the_log_files(tmp_path: Path) -> None:
    code = "import sys; print('to-out'); print('to-err', file=sys.stderr)"
    record = process.spawn(
        [sys.executable, "-c", code], tmp_path / "err", stdout_path=tmp_path / "o"
    )
    process.wait_until(lambda: False, record, timeout=10)
    assert (tmp_path / "o").read_text() == "to-out\n"
    assert (tmp_path / "err").read_text() == "to-err\n"


def test_port_helpers() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not process.port_free("127.0.0.1", port)
        assert process.port_open("127.0.0.1", port)
    free = process.free_port()
    assert process.port_free("127.0.0.1", free)
