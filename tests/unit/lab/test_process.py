from __future__ import annotations

import socket
import sys
import time
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


def test_stop_all_asks_every_process_first_then_kills_the_deaf(tmp_path: Path) -> None:
    """The lab going down: each process gets SIGTERM before any is waited
    for (each finishes its work in parallel); one that ignores it is killed."""
    polite = (
        "import signal, sys, time, pathlib\n"
        "def term(*_):\n"
        "    pathlib.Path(sys.argv[1]).write_text(str(time.monotonic()))\n"
        "    time.sleep(2)\n"  # its flush
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, term)\n"
        "time.sleep(60)\n"
    )
    deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    records = [process.spawn([sys.executable, "-c", polite, str(tmp_path / f"t{i}")],
                             tmp_path / f"l{i}") for i in range(4)]  # fmt: skip
    records.append(process.spawn([sys.executable, "-c", deaf], tmp_path / "deaf"))
    time.sleep(1)  # the handlers are set
    stopped = process.stop_all(records, timeout=6)
    assert stopped == records
    assert not any(process.is_alive(r) for r in records)
    told = sorted(float((tmp_path / f"t{i}").read_text()) for i in range(4))
    assert told[-1] - told[0] < 1.5  # all were told before the first had finished (2 s)
