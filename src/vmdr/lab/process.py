"""Start, watch and stop the lab's background services by pid.

The lab's services outlive the ``vmdr lab up`` command that starts them, so they
run in their own session and are found again later by pid. A pid alone can be
reused by the kernel after a crash; each record therefore keeps the process's
start time from ``/proc`` too, and ``stop`` refuses to signal a pid whose start
time no longer matches (it would be somebody else's process).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmdr.model.procfs import start_time_of, stat_fields


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    start_time: int  # clock ticks since boot, field 22 of /proc/PID/stat

    def to_dict(self) -> dict[str, int]:
        return {"pid": self.pid, "start_time": self.start_time}

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> ProcessRecord:
        return cls(pid=int(data["pid"]), start_time=int(data["start_time"]))


def is_alive(record: ProcessRecord) -> bool:
    """True if the recorded process still runs (a zombie counts as dead)."""
    fields = stat_fields(record.pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return int(fields[19]) == record.start_time


def spawn(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    stdout_path: Path | None = None,
) -> ProcessRecord:
    """Start ``argv`` in its own session, stderr (and stdout) to files.

    ``posix_spawn`` rather than ``subprocess.Popen``: the service must outlive
    this process, and a ``Popen`` object would insist on being waited for.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = stdout_path or log_path
    program = argv[0] if "/" in argv[0] else shutil.which(argv[0]) or argv[0]
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(out), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
    ]
    pid = os.posix_spawn(
        program, list(argv), dict(env if env is not None else os.environ),
        file_actions=actions, setsid=True,
    )  # fmt: skip
    started = start_time_of(pid)
    # -1 if it died already; the caller's readiness check reports why.
    return ProcessRecord(pid, started if started is not None else -1)


def kill(record: ProcessRecord) -> bool:
    """SIGKILL the recorded process group at once (a crash, for tests)."""
    return stop(record, timeout=0.0)


def signal_process(record: ProcessRecord, sig: signal.Signals) -> None:
    """Send ``sig`` to the recorded process group if it is still the one recorded."""
    if is_alive(record):
        _signal_group(record.pid, sig)


def stop(record: ProcessRecord, timeout: float = 10.0) -> bool:
    """Stop a recorded process: SIGTERM, then SIGKILL after ``timeout``.

    Returns True if the process was running and is now gone. The whole process
    group is signalled, since launchers such as npm's shims start children.
    """
    return bool(stop_all([record], timeout))


def stop_all(records: list[ProcessRecord], timeout: float = 10.0) -> list[ProcessRecord]:
    """``stop`` many processes at once: every one gets SIGTERM, then all are
    waited for together (``timeout`` in all, not each), and SIGKILL ends the
    rest. Returns those that were running."""
    running = [r for r in records if is_alive(r)]
    for record in running:
        _signal_group(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    left = list(running)
    while left and time.monotonic() < deadline:
        for record in left:
            _reap(record.pid)
        left = [r for r in left if is_alive(r)]
        if left:
            time.sleep(0.05)
    for record in left:
        _signal_group(record.pid, signal.SIGKILL)
    for _ in range(100):
        for record in left:
            _reap(record.pid)
        left = [r for r in left if is_alive(r)]
        if not left:
            break
        time.sleep(0.05)
    return running


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pid: int) -> int | None:
    """Collect our own child's exit status so it does not linger as a zombie."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if done else None


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(host: str, port: int) -> bool:
    """True if nothing listens on ``host:port`` and we could bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now on ``host`` (TCP and UDP, for DNS)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port found on " + host)


def wait_until(
    check: Callable[[], bool],
    record: ProcessRecord,
    timeout: float,
    interval: float = 0.05,
) -> str | None:
    """Wait for ``check`` to pass; return None on success or why it did not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return None
        status = _reap(record.pid)
        if status is not None or not is_alive(record):
            return "exited" + (f" with status {status}" if status is not None else "")
        time.sleep(interval)
    return f"not ready after {timeout:.0f} s"
