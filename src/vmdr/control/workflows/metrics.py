"""Replication samples: what the dashboard's RPO and throughput charts draw.

Both directions already publish what a chart needs; this module keeps it
over time, one row per measurement (``replication_samples``):

- to the cloud, each ``replicate`` cycle ends with a sample: the RPO just
  before its new point (the oldest the newest point got: the saw-tooth's
  peak), the bytes the cycle wrote and how long the cycle took;
- to on-premises, each process-server heartbeat gives the lag of every
  failback replication (``model.ids.ReplicationId``) and its cumulative sent
  bytes; the sample keeps the largest lag and the bytes sent since the
  previous heartbeat.

Samples older than ``RETENTION_SECONDS`` are dropped when a new one is
written, so the table stays small without a separate clean-up job. They are
served by ``GET /v1/protected-items/{id}/metrics`` (``items.py``).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vmdr.control.db.models import Job, ProtectedItem, RecoveryPoint, ReplicationSample
from vmdr.model.ids import ReplicationId
from vmdr.model.lifecycle import Direction

__all__ = ["RETENTION_SECONDS", "record", "record_cycle", "record_heartbeat", "samples"]

RETENTION_SECONDS = 7 * 86400.0
MAX_SAMPLES = 5000  # per answer: a week of one-minute cycles is ~10 000; charts need fewer


def record(
    s: Session,
    item_id: str,
    direction: str,
    rpo_seconds: float | None,
    moved: int,
    seconds: float,
    now: float | None = None,
) -> None:
    now = time.time() if now is None else now
    s.add(
        ReplicationSample(
            item_id=item_id, time=now, direction=direction, rpo_seconds=rpo_seconds,
            bytes=max(int(moved), 0), seconds=max(seconds, 0.0),
        )
    )  # fmt: skip
    s.execute(
        delete(ReplicationSample).where(
            ReplicationSample.item_id == item_id,
            ReplicationSample.time < now - RETENTION_SECONDS,
        )
    )


def record_cycle(s: Session, item_id: str, job_id: str, moved: int) -> None:
    """The sample of a finished cloud-bound cycle (its newest point is cut)."""
    times = sorted(
        set(s.scalars(select(RecoveryPoint.time).where(RecoveryPoint.item_id == item_id))),
        reverse=True,
    )
    rpo = times[0] - times[1] if len(times) > 1 else None
    job = s.get(Job, job_id)
    seconds = time.time() - _epoch(job.created_at) if job is not None else 0.0
    record(s, item_id, str(Direction.PRIMARY_TO_RECOVERY), rpo, moved, seconds)


def _epoch(value: dt.datetime) -> float:
    """SQLite gives back naive UTC datetimes; PostgreSQL aware ones."""
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()


def record_heartbeat(
    s: Session, before: dict[str, Any], health: dict[str, Any], seconds: float
) -> int:
    """Samples for the items whose failback replications the process server
    reported, from this heartbeat's ``health`` and the previous one's
    (``before``, ``seconds`` ago); returns how many were written."""
    sent_before = {
        str(r.get("id")): int(r.get("sent_bytes") or 0) for r in before.get("replications") or []
    }
    per_item: dict[str, list[dict[str, Any]]] = {}
    for repl in health.get("replications") or []:
        ident = ReplicationId.parse(str(repl.get("id", "")))
        if ident is not None:
            per_item.setdefault(ident.item, []).append(repl)
    written = 0
    for item_id, repls in per_item.items():
        if s.get(ProtectedItem, item_id) is None:
            continue
        lags = [r.get("lag_seconds") for r in repls]
        rpo = None if None in lags else max(float(x) for x in lags)  # type: ignore[arg-type]
        moved = 0
        for r in repls:
            now_sent, then = int(r.get("sent_bytes") or 0), sent_before.get(str(r["id"]), 0)
            moved += now_sent - then if now_sent >= then else now_sent  # restarted: from zero
        record(s, item_id, str(Direction.RECOVERY_TO_PRIMARY), rpo, moved, seconds)
        written += 1
    return written


def _sample(r: ReplicationSample) -> dict[str, Any]:
    rate = r.bytes / r.seconds if r.seconds > 0 else None
    return {
        "time": r.time, "direction": r.direction, "rpo_seconds": r.rpo_seconds,
        "bytes": r.bytes, "seconds": round(r.seconds, 3),
        "bytes_per_second": round(rate, 1) if rate is not None else None,
    }  # fmt: skip


def samples(s: Session, item_id: str, since: float = 0.0) -> list[dict[str, Any]]:
    """The item's newest ``MAX_SAMPLES`` samples since ``since``, oldest first."""
    rows = list(
        s.scalars(
            select(ReplicationSample)
            .where(ReplicationSample.item_id == item_id, ReplicationSample.time >= since)
            .order_by(ReplicationSample.time.desc())
            .limit(MAX_SAMPLES)
        )
    )
    return [_sample(r) for r in reversed(rows)]
