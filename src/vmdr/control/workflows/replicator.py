"""Continuous replication to the cloud between operations.

Every protected item replicating to the cloud gets a ``replicate`` job each
``replication_interval`` seconds (the data-plane file; default 300): the
changed blocks of each disk to its page blob, then a recovery point (blob
snapshots). It is a job like the others, so it holds the item's job lock:
an operation cancels the cycle in progress (a queued one ends at once) and
starts when it has stopped, so a cycle never overlaps an operation and never
delays a failover by more than a second or two. The oldest continuous points
beyond ``point_retention`` (default 24) are deleted with their snapshots. A
failed cycle is kept on the item (``replication_error``) and shows in its
health until the next cycle succeeds; a cycle that gave way is not a failure.

**The scheduler** is one periodic task of the job engine (a DBOS schedule:
it fires on one worker at a time, every ``scheduler_tick`` seconds, default
5). A tick reads the items and groups whose ``cycle_anchor`` lies one
interval back, by index: two statements when nothing is due, whatever the
number of items. An item's anchor is set when it starts replicating
(``context.py``) and, ±10 % jittered, each time a cycle is queued; a changed
interval applies at the next tick. The cycles queue per
process server (the ``replication`` queue, partitioned, with a concurrency
limit per process server).

Members of a replication group (``control/workflows/groups.py``) are not replicated
one by one: while every member can replicate, the group gets one
``groupPoint`` job each interval, whose points all members share; while one
cannot (failed over, in an operation), the others replicate alone.

Failback replication (to on-premises) is continuous in the process server
itself; its RPO comes from the process server's heartbeat.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import InstrumentedAttribute

from vmdr.control.db.models import Job, ProtectedItem, RecoveryPoint, ReplicationGroup
from vmdr.control.jobs import ACTIVE, JobCancelled, JobConflict, JobKind, StepContext
from vmdr.control.jobs.params import ItemParams
from vmdr.control.workflows import metrics
from vmdr.control.workflows.context import Workflows, jitter, replicating, to_state

__all__ = ["DEFAULT_TICK", "prune_points", "replicate_kind", "schedule_due"]

log = logging.getLogger(__name__)
DEFAULT_RETENTION = 24
DEFAULT_TICK = 5.0
BATCH = 500  # cycles queued per tick at most; the rest are still due at the next
RETRY = 5.0  # seconds before a busy item or group is tried again


def _retention(wf: Workflows) -> int:
    return wf.dataplane.point_retention or DEFAULT_RETENTION


def prune_points(
    wf: Workflows, where: ColumnElement[bool], seq: InstrumentedAttribute[Any]
) -> None:
    """Delete the points matching ``where`` beyond ``point_retention``, oldest
    by ``seq`` (a point's number: ``RecoveryPoint.seq`` or ``.group_seq``)
    first: their snapshots, then their rows."""
    from vmdr.providers.azure.pageblob import delete

    keep = _retention(wf)
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


def replicates(wf: Workflows, item: str) -> bool:
    """Does the item replicate to the cloud now (a cycle may touch its disks)?"""
    with wf.sessions() as s:
        row, machine = wf.item(s, item)
        return replicating(to_state(row, machine.name))


def _while_replicating(wf: Workflows, name: str, fn: Any) -> Any:
    """A cycle's step, a no-op once the item stopped replicating to the cloud
    (failed over since the cycle was queued, or a retried old cycle): the
    cloud VM may be running on those disks."""

    def step(ctx: StepContext) -> None:
        if not replicates(wf, ctx.params["item"]):
            ctx.progress(name, 0, "skipped: the item does not replicate to the cloud now")
            return
        fn(ctx)

    return step


def replicate_kind(wf: Workflows) -> JobKind:
    from vmdr.control.workflows.to_cloud import sync_disks, take_point

    def failed(ctx: StepContext, error: dict[str, Any]) -> None:
        if error.get("code") == JobCancelled.code:
            return  # it gave way to an operation, or a user stopped it: not a fault
        wf.update_settings(ctx.params["item"], replication_error=error)

    steps = [
        ("sync", lambda ctx: sync_disks(wf, ctx, "sync")),
        ("recovery-point", lambda ctx: take_point(wf, ctx, "continuous")),
        ("prune", lambda ctx: _prune(wf, ctx)),
    ]
    return JobKind(
        "replicate",
        [(name, _while_replicating(wf, name, fn)) for name, fn in steps],
        None,
        failed,
        queue="replication",
        params=ItemParams,
    )


def schedule_due(wf: Workflows, now: float | None = None) -> list[str]:
    """One tick of the scheduler: queue the cycles that are due; their job ids."""
    now = time.time() if now is None else now
    interval = wf.interval()
    with wf.sessions() as s:
        due_items = s.execute(
            select(ProtectedItem.id, ProtectedItem.process_server_id)
            .where(ProtectedItem.cycle_anchor <= now - interval)
            .order_by(ProtectedItem.cycle_anchor)
            .limit(BATCH)
        ).all()
        due_groups = list(
            s.scalars(
                select(ReplicationGroup.id)
                .where(ReplicationGroup.cycle_anchor <= now - interval)
                .limit(BATCH)
            )
        )
        if not due_items and not due_groups:
            return []
        groups = list(s.scalars(select(ReplicationGroup)))
        members = {item for g in groups for item in g.items}
        ready = {
            row.id
            for row, machine in wf.items_with_machines(s, members)
            if replicating(to_state(row, machine.name))
        }
        busy = set(
            s.scalars(select(Job.item_id).where(Job.item_id.in_(members), Job.state.in_(ACTIVE)))
        )
    # A group's members are replicated together while all of them can be;
    # otherwise (one failed over, say) the others go on alone.
    whole = {g.id: g for g in groups if g.items and all(i in ready for i in g.items)}
    grouped = {item for g in whole.values() for item in g.items}
    retry = now - interval + RETRY  # an anchor that makes it due again in RETRY seconds
    started = []
    for item, process_server in due_items:
        if item in grouped:
            _reschedule(wf, ProtectedItem, item, now + jitter(interval))
            continue
        job = _queue(wf, "replicate", {"item": item}, item, ProtectedItem,
                     now + jitter(interval), retry, process_server)  # fmt: skip
        started += [job] if job else []
    for group_id in due_groups:
        if group_id not in whole:  # not every member can replicate now
            _reschedule(wf, ReplicationGroup, group_id, now)
            continue
        if busy & set(whole[group_id].items):  # a member's own last cycle: shortly
            _reschedule(wf, ReplicationGroup, group_id, retry)
            continue
        job = _queue(wf, "groupPoint", {"group": group_id}, group_id, ReplicationGroup,
                     now + jitter(interval), retry, None)  # fmt: skip
        started += [job] if job else []
    return started


def _queue(
    wf: Workflows, kind: str, params: dict[str, Any], holder: str, model: Any,
    anchor: float, retry_at: float, partition: str | None,
) -> str | None:  # fmt: skip
    """A cycle's job, with the holder's next cycle moved in the same
    transaction; a holder busy with another job is tried again shortly."""

    def schedule(s: Any, _job: Any) -> None:
        if model is ProtectedItem:  # it may have failed over since the tick read it
            row, machine = wf.item(s, holder)
            if not replicating(to_state(row, machine.name)):
                raise _NotReplicating
        s.execute(update(model).where(model.id == holder).values(cycle_anchor=anchor))

    try:
        return wf.engine.submit(kind, params, holder, partition=partition, prepare=schedule)
    except JobConflict:  # an operation or a cycle holds it (a group's cut waits on members)
        _reschedule(wf, model, holder, retry_at)
    except _NotReplicating:
        pass
    return None


class _NotReplicating(Exception):
    pass


def _reschedule(wf: Workflows, model: Any, holder: str, anchor: float) -> None:
    with wf.sessions.begin() as s:
        s.execute(
            update(model)
            .where(model.id == holder, model.cycle_anchor.is_not(None))
            .values(cycle_anchor=anchor)
        )
