"""The process servers and master targets the configuration server knows:
when each was last heard from, and whether that is recent enough to count
it healthy (registration and heartbeats arrive through ``api/roles.py``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

STALE_SECONDS = 90.0


def last_beat(row: Any) -> dt.datetime | None:
    beat: dt.datetime | None = row.heartbeat_at
    if beat is not None and beat.tzinfo is None:  # SQLite returns naive UTC
        beat = beat.replace(tzinfo=dt.UTC)
    return beat


def is_healthy(row: Any, now: dt.datetime | None = None) -> bool:
    """A heartbeat came in the last ``STALE_SECONDS``."""
    beat = last_beat(row)
    now = now or dt.datetime.now(dt.UTC)
    return beat is not None and (now - beat).total_seconds() < STALE_SECONDS
