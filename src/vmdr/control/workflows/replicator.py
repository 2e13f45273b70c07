"""Continuous replication to the cloud between operations.

Every protected item replicating to the cloud gets a ``replicate`` job each
``replication_interval`` seconds (the data-plane file; default 300): the
changed blocks of each disk to its page blob, then a recovery point (blob
snapshots). It is a job like the others, so it holds the item's job lock: a
failover waits for the cycle in progress (or is refused with VMDR-E0511 and
retried), and a cycle never overlaps an operation. The oldest continuous
points beyond ``point_retention`` (default 24) are deleted with their
snapshots. A failed cycle is kept on the item (``replication_error``) and
shows in its health until the next cycle succeeds.

Members of a replication group (``control/groups.py``) are not replicated
one by one: while every member can replicate, the group gets one
``groupPoint`` job each interval, whose points all members share; while one
cannot (failed over, in an operation), the others replicate alone.

Failback replication (to on-premises) is continuous in the process server
itself; its RPO comes from the process server's heartbeat.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import InstrumentedAttribute

from vmdr.control.db.models import Job, ProtectedItem, RecoveryPoint, ReplicationGroup
from vmdr.control.jobs import ACTIVE, JobConflict, JobKind, StepContext
from vmdr.control.workflows import metrics
from vmdr.control.workflows.context import Workflows
from vmdr.model.errors import VmdrError
from vmdr.model.lifecycle import Direction, State

__all__ = ["Replicator", "replicate_kind"]

log = logging.getLogger(__name__)
DEFAULT_INTERVAL = 300.0
DEFAULT_RETENTION = 24


def _options(wf: Workflows) -> tuple[float, int]:
    raw = wf.dataplane.raw()
    interval = float(raw.get("replication_interval") or DEFAULT_INTERVAL)
    return max(interval, 1.0), int(raw.get("point_retention") or DEFAULT_RETENTION)


def prune_points(
    wf: Workflows, where: ColumnElement[bool], seq: InstrumentedAttribute[Any]
) -> None:
    """Delete the points matching ``where`` beyond ``point_retention``, oldest
    by ``seq`` (a point's number: ``RecoveryPoint.seq`` or ``.group_seq``)
    first: their snapshots, then their rows."""
    from vmdr.providers.azure.pageblob import delete

    _, keep = _options(wf)
    with wf.sessions() as s:
        rows = list(s.scalars(select(RecoveryPoint).where(where)))
    seqs = sorted({getattr(r, seq.key) for r in rows} - {None})
    old = set(seqs[:-keep]) if len(seqs) > keep else set()
    if not old:
        return
    for row in rows:
        if getattr(row, seq.key) in old and row.location:
            delete(row.location)
    with wf.sessions.begin() as s:
        for row in s.scalars(select(RecoveryPoint).where(where, seq.in_(old))):
            s.delete(row)


def prune_continuous(wf: Workflows, item: str) -> None:
    """Delete the item's oldest continuous points beyond ``point_retention``."""
    where = (RecoveryPoint.item_id == item) & (RecoveryPoint.tag == "continuous")
    prune_points(wf, where, RecoveryPoint.seq)


def _prune(wf: Workflows, ctx: StepContext) -> None:
    item = ctx.params["item"]
    prune_continuous(wf, item)
    wf.update_settings(item, replication_error=None, replicated_at=time.time())
    from vmdr.control.workflows.to_cloud import last_sync_bytes

    with wf.sessions.begin() as s:
        metrics.record_cycle(s, item, ctx.job_id, last_sync_bytes(wf, item))


def replicate_kind(wf: Workflows) -> JobKind:
    from vmdr.control.workflows.to_cloud import _point, _sync

    def failed(ctx: StepContext, error: dict[str, Any]) -> None:
        wf.update_settings(ctx.params["item"], replication_error=error)

    return JobKind(
        "replicate",
        [
            ("sync", lambda ctx: _sync(wf, ctx, "sync")),
            ("recovery-point", lambda ctx: _point(wf, ctx, "continuous")),
            ("prune", lambda ctx: _prune(wf, ctx)),
        ],
        None,
        failed,
    )


class Replicator:
    """The thread that starts each item's next cycle when it is due."""

    def __init__(self, wf: Workflows, tick: float = 1.0) -> None:
        self.wf, self.tick = wf, tick
        self.stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="replicator", daemon=True).start()

    def _run(self) -> None:
        while not self.stop.wait(self.tick):
            try:
                self.once()
            except Exception:  # a bad cycle must not end the thread
                log.exception("replicator")

    def once(self) -> list[str]:
        interval, _ = _options(self.wf)
        now = time.time()
        with self.wf.sessions() as s:
            groups = list(s.scalars(select(ReplicationGroup)))
            ready = {
                row.id: row.state
                for row in s.scalars(
                    select(ProtectedItem).where(
                        # A test failover leaves replication running (it uses copies).
                        ProtectedItem.state.in_([State.PROTECTED, State.TEST_FAILOVER_COMPLETED]),
                        ProtectedItem.direction == Direction.PRIMARY_TO_RECOVERY,
                        ProtectedItem.running.is_(None),
                    )
                )
            }
            # A group's members are replicated together while all of them can
            # be; otherwise (one failed over, say) the others go on alone.
            whole = [g for g in groups if all(i in ready for i in g.items)]
            grouped = {item for g in whole for item in g.items}
            busy = set(s.scalars(select(Job.item_id).where(Job.state.in_(ACTIVE))))
            due = [
                ("replicate", {"item": item}, item)
                for item in ready
                if item not in grouped and now - _last_point(s, item) >= interval
            ]
            due += [
                ("groupPoint", {"group": g.id}, g.id)
                for g in whole
                if not busy & set(g.items)  # a member's own last cycle: next tick
                and now - _last_group_point(s, g.id) >= interval
            ]
        started = []
        for kind, params, holder in due:
            try:
                started.append(self.wf.runner.launch(kind, params, item_id=holder))
            except (JobConflict, VmdrError):
                continue  # an operation or a cycle holds the item: next tick
        return started


def _last_group_point(s: Any, group: str) -> float:
    from sqlalchemy import func

    newest = s.scalar(select(func.max(RecoveryPoint.time)).where(RecoveryPoint.group_id == group))
    return float(newest or 0.0)


def _last_point(s: Any, item: str) -> float:
    from sqlalchemy import func

    newest = s.scalar(select(func.max(RecoveryPoint.time)).where(RecoveryPoint.item_id == item))
    return float(newest or 0.0)
