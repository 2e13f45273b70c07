"""What ``/proc`` says about a process: whether it still runs (a zombie does
not: it has ended and only waits for its parent to collect its status, which
in a container whose first process never does so may be forever) and when it
started (so that a reused pid is not taken for the process once recorded)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["running", "start_time_of", "stat_fields"]


def stat_fields(pid: int) -> list[str] | None:
    """Fields 3 onwards of ``/proc/PID/stat`` (``[0]`` is the state letter,
    ``[19]`` the start time in clock ticks since boot), or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def start_time_of(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def running(pid: int) -> bool:
    """Does ``pid`` name a process that has not ended (zombies have)?"""
    fields = stat_fields(pid)
    if fields is not None:
        return fields[0] not in ("Z", "X")
    if Path("/proc/self").exists():
        return False
    try:  # no /proc here: ask the kernel, which cannot tell a zombie
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
