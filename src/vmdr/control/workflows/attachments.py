"""Disks left on the master target's VM: found from the items, released by a job.

An item's failback target disks are hot-added to the master target's VM by
its reprotect (``replications.attach_targets``) and detached by its failback
before their own VM starts (``detach_targets``); a target's ``device`` is
set while vmdr holds it attached. The jobs in between are durable (a
configuration server killed between attach and detach resumes them), but a
reprotect that *failed* after its attach, or a job cancelled there, leaves
the disks on the appliance: the on-premises VM could not start on them, and
they count towards the appliance's 60.

So every ``RECONCILE_SECONDS`` (on one worker, and soon after a start), the
items that hold attached targets they do not need are found, and each gets a
``releaseTargets`` job: it holds the item's job lock, so it never races an
operation that is attaching them, checks again that they are not needed,
stops the item's failback replications if any still run, and detaches the
disks (idempotent: what vCenter no longer shows attached is left alone).
An item needs them while a job runs on it and while it replicates home
(protected, or in a failback drill, in the direction recovery → primary).
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from vmdr.control.db.item_settings import ItemSettings
from vmdr.control.db.models import Machine, ProtectedItem
from vmdr.control.jobs import JobConflict, JobKind, StepContext
from vmdr.control.jobs.params import ItemParams
from vmdr.control.workflows.context import Workflows, to_state
from vmdr.model.lifecycle import Direction, ItemState, State

__all__ = ["RECONCILE_SECONDS", "needs_targets", "reconcile_attachments", "release_kind"]

log = logging.getLogger(__name__)
RECONCILE_SECONDS = 60.0


def needs_targets(item: ItemState) -> bool:
    """Does the item need its failback target disks on the master target's VM?"""
    return item.running is not None or (
        item.direction is Direction.RECOVERY_TO_PRIMARY
        and item.state in (State.PROTECTED, State.TEST_FAILOVER_COMPLETED)
    )


def holds_targets(settings: ItemSettings) -> bool:
    """Are any of its targets attached, as far as vmdr knows?"""
    return any(t.device for t in settings.failback_targets)


def stale_items(wf: Workflows) -> list[str]:
    """The items holding attached targets they do not need now."""
    with wf.sessions() as s:
        rows = s.execute(
            select(ProtectedItem, Machine).join(Machine, Machine.id == ProtectedItem.machine_id)
        ).all()
        return [
            row.id
            for row, machine in rows
            if not needs_targets(to_state(row, machine.name))
            and holds_targets(ItemSettings.of(row.settings))
        ]


def reconcile_attachments(wf: Workflows) -> list[str]:
    """One tick: a ``releaseTargets`` job per stale item; their ids. An item
    busy with a job is left to it (that job attaches or detaches itself)."""
    started = []
    for item in stale_items(wf):
        try:
            started.append(wf.engine.submit("releaseTargets", {"item": item}, item))
        except JobConflict:
            continue
    if started:
        log.info("releasing disks left on the master target by %d item(s)", len(started))
    return started


def _release(wf: Workflows, ctx: StepContext) -> None:
    from vmdr.control.workflows.replications import stop_replications

    item = ctx.params["item"]
    with wf.sessions() as s:
        row, machine = wf.item(s, item)
        state = to_state(row, machine.name)
    if needs_targets(state):  # an operation started since the tick, or it replicates home
        ctx.progress("release", 0, "still needed: the item replicates home")
        return
    # A failed reprotect may have left its replications running towards
    # them: they stop first (the master target forgets their journals).
    detached = stop_replications(wf, item)
    ctx.progress("release", 0, f"{len(detached)} disk(s) detached from the master target's VM")


def release_kind(wf: Workflows) -> JobKind:
    return JobKind("releaseTargets", [("release", wf.step(_release))], params=ItemParams)
