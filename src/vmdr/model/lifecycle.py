"""The life cycle of a protected item, in one place (pure, no I/O).

Names follow the Azure Site Recovery API. An operation *starts* (the item
enters a transitional state and remembers where it came from), then either
*completes* (the item reaches the operation's end state) or *fails* (the
item returns to where it was, with the error kept)::

    Unprotected ─enableProtection→ EnablingProtection ⇒ InitialReplication ⇒ Protected
    Protected ─plannedFailover→ PlannedFailover ⇒ FailedOver
    Protected ─unplannedFailover→ UnplannedFailover ⇒ FailedOver
    FailedOver ─cancelFailover→ CancellingFailover ⇒ Protected        (planned failovers only)
    FailedOver ─commit→ Committing ⇒ Committed
    Committed ─reprotect→ Reprotecting ⇒ InitialReplication (direction reversed) ⇒ Protected
    Protected ─testFailover→ TestFailover ⇒ TestFailoverCompleted
    TestFailoverCompleted ─testFailoverCleanup→ TestFailoverCleanup ⇒ Protected
    Protected | InitialReplication ─resync→ Resyncing ⇒ InitialReplication
    Protected | InitialReplication | Committed ─disableProtection→ DisablingProtection ⇒ Unprotected

``⇒`` marks what completion of the running step leads to; InitialReplication
is itself left by ``initial_replication_done``. Each item also records its
**active site** (where the workload runs: ``primary`` = on-premises,
``recovery`` = cloud) and the **direction** of replication. A failover moves
the active site to the direction's target; reprotect reverses the direction;
so a failback is simply a failover while the direction is recovery→primary.

An operation that is not allowed raises ``IllegalTransition`` (VMDR-E0501)
naming the item's state and what is allowed in it: never a silent no-op.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from vmdr.model.errors import VmdrError

__all__ = [
    "Direction",
    "IllegalTransition",
    "ItemState",
    "Operation",
    "Site",
    "State",
    "allowed",
    "complete",
    "fail",
    "initial_replication_done",
    "start",
]


class State(StrEnum):
    UNPROTECTED = "Unprotected"
    ENABLING_PROTECTION = "EnablingProtection"
    INITIAL_REPLICATION = "InitialReplication"
    PROTECTED = "Protected"
    RESYNCING = "Resyncing"
    PLANNED_FAILOVER = "PlannedFailover"
    UNPLANNED_FAILOVER = "UnplannedFailover"
    FAILED_OVER = "FailedOver"
    CANCELLING_FAILOVER = "CancellingFailover"
    COMMITTING = "Committing"
    COMMITTED = "Committed"
    REPROTECTING = "Reprotecting"
    TEST_FAILOVER = "TestFailover"
    TEST_FAILOVER_COMPLETED = "TestFailoverCompleted"
    TEST_FAILOVER_CLEANUP = "TestFailoverCleanup"
    DISABLING_PROTECTION = "DisablingProtection"


class Operation(StrEnum):
    ENABLE_PROTECTION = "enableProtection"
    TEST_FAILOVER = "testFailover"
    TEST_FAILOVER_CLEANUP = "testFailoverCleanup"
    PLANNED_FAILOVER = "plannedFailover"
    UNPLANNED_FAILOVER = "unplannedFailover"
    COMMIT = "commit"
    CANCEL_FAILOVER = "cancelFailover"
    REPROTECT = "reprotect"
    RESYNC = "resync"
    DISABLE_PROTECTION = "disableProtection"


class Site(StrEnum):
    PRIMARY = "primary"  # on-premises
    RECOVERY = "recovery"  # the cloud


class Direction(StrEnum):
    PRIMARY_TO_RECOVERY = "primaryToRecovery"
    RECOVERY_TO_PRIMARY = "recoveryToPrimary"

    @property
    def target(self) -> Site:
        return Site.RECOVERY if self is Direction.PRIMARY_TO_RECOVERY else Site.PRIMARY

    def reversed(self) -> Direction:
        if self is Direction.PRIMARY_TO_RECOVERY:
            return Direction.RECOVERY_TO_PRIMARY
        return Direction.PRIMARY_TO_RECOVERY


class IllegalTransition(VmdrError):
    code = "VMDR-E0501"
    http_status = 409
    msg = "protected item {item!r} is {state}: {operation} is not allowed now"
    fix = "In state {state} the allowed operations are: {allowed}."


# operation -> (states it may start from, transitional state, end state on completion)
_RULES: dict[Operation, tuple[frozenset[State], State, State]] = {
    Operation.ENABLE_PROTECTION: (
        frozenset({State.UNPROTECTED}),
        State.ENABLING_PROTECTION,
        State.INITIAL_REPLICATION,
    ),
    Operation.RESYNC: (
        frozenset({State.PROTECTED, State.INITIAL_REPLICATION}),
        State.RESYNCING,
        State.INITIAL_REPLICATION,
    ),
    Operation.PLANNED_FAILOVER: (
        frozenset({State.PROTECTED}),
        State.PLANNED_FAILOVER,
        State.FAILED_OVER,
    ),
    Operation.UNPLANNED_FAILOVER: (
        frozenset({State.PROTECTED}),
        State.UNPLANNED_FAILOVER,
        State.FAILED_OVER,
    ),
    Operation.CANCEL_FAILOVER: (
        frozenset({State.FAILED_OVER}),
        State.CANCELLING_FAILOVER,
        State.PROTECTED,
    ),
    Operation.COMMIT: (frozenset({State.FAILED_OVER}), State.COMMITTING, State.COMMITTED),
    Operation.REPROTECT: (
        frozenset({State.COMMITTED}),
        State.REPROTECTING,
        State.INITIAL_REPLICATION,
    ),
    Operation.TEST_FAILOVER: (
        frozenset({State.PROTECTED}),
        State.TEST_FAILOVER,
        State.TEST_FAILOVER_COMPLETED,
    ),
    Operation.TEST_FAILOVER_CLEANUP: (
        frozenset({State.TEST_FAILOVER_COMPLETED}),
        State.TEST_FAILOVER_CLEANUP,
        State.PROTECTED,
    ),
    Operation.DISABLE_PROTECTION: (
        frozenset({State.PROTECTED, State.INITIAL_REPLICATION, State.COMMITTED}),
        State.DISABLING_PROTECTION,
        State.UNPROTECTED,
    ),
}
TRANSITIONAL = frozenset(rule[1] for rule in _RULES.values())


@dataclass(frozen=True)
class ItemState:
    """Where a protected item stands. ``running``/``previous`` are set while an
    operation runs; ``planned`` tells how the last failover was made."""

    name: str
    state: State = State.UNPROTECTED
    active_site: Site = Site.PRIMARY
    direction: Direction = Direction.PRIMARY_TO_RECOVERY
    running: Operation | None = None
    previous: State | None = None
    planned: bool | None = None
    last_error: str | None = None


def allowed(item: ItemState) -> list[Operation]:
    """The operations ``item`` may start now, in a stable order."""
    return [op for op in Operation if _may_start(item, op)]


def _may_start(item: ItemState, op: Operation) -> bool:
    sources = _RULES[op][0]
    if item.running is not None or item.state not in sources:
        return False
    # A failover that was not planned cannot be cancelled: the source side
    # may be gone; the way back is commit, then reprotect and fail back.
    return not (op is Operation.CANCEL_FAILOVER and not item.planned)


def _refuse(item: ItemState, op: Operation | str) -> IllegalTransition:
    names = ", ".join(str(o) for o in allowed(item))
    if item.running is not None:
        names = f"none until {item.running} finishes"
    return IllegalTransition(
        item=item.name, state=str(item.state), operation=str(op), allowed=names or "none"
    )


def start(item: ItemState, op: Operation) -> ItemState:
    """Begin ``op``: the item enters its transitional state."""
    if not _may_start(item, op):
        raise _refuse(item, op)
    return replace(item, state=_RULES[op][1], running=op, previous=item.state, last_error=None)


def complete(item: ItemState) -> ItemState:
    """The running operation succeeded."""
    op = item.running
    if op is None:
        raise _refuse(item, "complete (no operation is running)")
    end = _RULES[op][2]
    done = replace(item, state=end, running=None, previous=None)
    if op in (Operation.PLANNED_FAILOVER, Operation.UNPLANNED_FAILOVER):
        done = replace(
            done, active_site=item.direction.target, planned=op is Operation.PLANNED_FAILOVER
        )
    elif op is Operation.CANCEL_FAILOVER:
        done = replace(done, active_site=item.direction.reversed().target, planned=None)
    elif op is Operation.REPROTECT:
        done = replace(done, direction=item.direction.reversed(), planned=None)
    elif op is Operation.DISABLE_PROTECTION:
        done = replace(done, planned=None)
    return done


def fail(item: ItemState, error: str) -> ItemState:
    """The running operation failed: back to where it started, error kept."""
    if item.running is None or item.previous is None:
        raise _refuse(item, "fail (no operation is running)")
    return replace(item, state=item.previous, running=None, previous=None, last_error=error)


def initial_replication_done(item: ItemState) -> ItemState:
    """The initial sync of the current direction finished: Protected."""
    if item.state is not State.INITIAL_REPLICATION or item.running is not None:
        raise _refuse(item, "initialReplicationDone")
    return replace(item, state=State.PROTECTED)
