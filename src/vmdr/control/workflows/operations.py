"""Starting an operation on a protected item (ASR names), the verb that the
item routes, recovery plans, replication groups and retries share.

The life cycle's rules live in ``model.lifecycle``; this module only asks it
(``start`` in the job's own transaction, ``complete``/``fail`` from the job).
Which job runs depends on the operation *and the direction*: a planned
failover while the direction is recovery → primary is a failback.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from vmdr.control.db.models import (
    Machine,
    ProtectedItem,
)
from vmdr.control.jobs import JobConflict
from vmdr.control.workflows.context import (
    ItemGone,
    Workflows,
    refuse_while_group_cuts,
    to_state,
)
from vmdr.model import lifecycle
from vmdr.model.errors import VmdrError
from vmdr.model.lifecycle import Direction, ItemState, Operation

__all__ = ["ItemChanged", "NotInThisVersion", "find_item", "job_kind_for", "start_operation"]


# How long an operation waits for a running replication cycle it cancelled.
CYCLE_GIVES_WAY = 30.0


class NotInThisVersion(VmdrError):
    code = "VMDR-E0827"
    http_status = 409
    msg = "{operation} while the direction is {direction} is not available in this version"
    fix = "Use the operations listed as allowed for the item (`vmdr items show ITEM`)."


_TO_CLOUD = Direction.PRIMARY_TO_RECOVERY


_KINDS: dict[tuple[Operation, Direction], str] = {
    (Operation.ENABLE_PROTECTION, _TO_CLOUD): "enableProtection",
    (Operation.PLANNED_FAILOVER, _TO_CLOUD): "plannedFailover",
    (Operation.PLANNED_FAILOVER, _TO_CLOUD.reversed()): "failback",
    (Operation.UNPLANNED_FAILOVER, _TO_CLOUD): "unplannedFailover",
    (Operation.CANCEL_FAILOVER, _TO_CLOUD): "cancelFailover",
    (Operation.COMMIT, _TO_CLOUD): "commit",
    (Operation.COMMIT, _TO_CLOUD.reversed()): "commitFailback",
    (Operation.REPROTECT, _TO_CLOUD): "reprotectToOnPremises",
    (Operation.REPROTECT, _TO_CLOUD.reversed()): "reprotectToCloud",
    (Operation.TEST_FAILOVER, _TO_CLOUD): "testFailover",
    (Operation.TEST_FAILOVER_CLEANUP, _TO_CLOUD): "testFailoverCleanup",
    (Operation.TEST_FAILOVER, _TO_CLOUD.reversed()): "failbackDrill",
    (Operation.TEST_FAILOVER_CLEANUP, _TO_CLOUD.reversed()): "failbackDrillCleanup",
    (Operation.RESYNC, _TO_CLOUD): "resyncToCloud",
    (Operation.RESYNC, _TO_CLOUD.reversed()): "resyncToOnPremises",
    (Operation.DISABLE_PROTECTION, _TO_CLOUD): "disableProtection",
    (Operation.DISABLE_PROTECTION, _TO_CLOUD.reversed()): "disableProtection",
}


def job_kind_for(item: ItemState, op: Operation) -> str:
    kind = _KINDS.get((op, item.direction))
    if kind is None:
        raise NotInThisVersion(operation=str(op), direction=str(item.direction))
    return kind


class ItemChanged(VmdrError):
    code = "VMDR-E0516"
    http_status = 409
    msg = "{item} changed while {operation} was being started (now {state}, {direction})"
    fix = "Look at the item (`vmdr items show {item}`); retry if the operation still applies."


def start_operation(
    wf: Workflows,
    item_id: str,
    op: Operation,
    params: dict[str, Any],
    *,
    job_id: str | None = None,
    parent: str | None = None,
) -> tuple[str, str]:
    """Start ``op`` on the item: in one transaction the job takes the item's
    lock, the life cycle says whether the operation may start (and the item
    enters it) and the job is queued; return (job id, job kind)."""
    with wf.sessions() as s:
        row, machine = wf.item(s, item_id)
        kind = job_kind_for(to_state(row, machine.name), op)
        if op is not Operation.UNPLANNED_FAILOVER:  # the disaster path never waits
            refuse_while_group_cuts(s, item_id, machine.name)

    def start(item: ItemState) -> ItemState:
        if job_kind_for(item, op) != kind:  # the direction turned since the read above
            raise ItemChanged(item=item.name, operation=str(op), state=str(item.state),
                              direction=str(item.direction))  # fmt: skip
        return lifecycle.start(item, op)

    def submit() -> str:
        return wf.engine.submit(
            kind, {"item": item_id, "operation": str(op), **params}, item_id,
            job_id=job_id, parent=parent,
            prepare=lambda s, _job: wf.transition_in(s, item_id, start),
        )  # fmt: skip

    try:
        return submit(), kind
    except JobConflict:
        # A replication cycle (or a release of disks left on the master
        # target) gives way to an operation: a queued one ends, a running one
        # is cancelled (its data copy stops within about a second) and waited
        # for. Anything else holding the item: E0511.
        if not wf.engine.give_way(item_id, ("replicate", "releaseTargets"), CYCLE_GIVES_WAY):
            raise
    return submit(), kind


def find_item(wf: Workflows, s: Any, ident: str) -> tuple[ProtectedItem, Machine]:
    """An item by its id or its machine's name."""
    row = s.get(ProtectedItem, ident)
    if row is None:
        row = s.scalars(
            select(ProtectedItem)
            .join(Machine)
            .where(or_(Machine.name == ident, Machine.id == ident))
        ).first()
    if row is None:
        raise ItemGone(item=ident)
    return wf.item(s, row.id)
