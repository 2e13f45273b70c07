"""The protected-item life cycle: every legal transition, every illegal one."""

from __future__ import annotations

import pytest

from vmdr.model.lifecycle import (
    Direction,
    IllegalTransition,
    ItemState,
    Operation,
    Site,
    State,
    allowed,
    complete,
    fail,
    initial_replication_done,
    start,
)

Op, S = Operation, State

# Written out by hand from docs/ARCHITECTURE.md, not derived from the code:
# (state, operation) -> (transitional state, state after completion)
LEGAL = {
    (S.UNPROTECTED, Op.ENABLE_PROTECTION): (S.ENABLING_PROTECTION, S.INITIAL_REPLICATION),
    (S.PROTECTED, Op.RESYNC): (S.RESYNCING, S.INITIAL_REPLICATION),
    (S.INITIAL_REPLICATION, Op.RESYNC): (S.RESYNCING, S.INITIAL_REPLICATION),
    (S.PROTECTED, Op.PLANNED_FAILOVER): (S.PLANNED_FAILOVER, S.FAILED_OVER),
    (S.PROTECTED, Op.UNPLANNED_FAILOVER): (S.UNPLANNED_FAILOVER, S.FAILED_OVER),
    (S.FAILED_OVER, Op.CANCEL_FAILOVER): (S.CANCELLING_FAILOVER, S.PROTECTED),
    (S.FAILED_OVER, Op.COMMIT): (S.COMMITTING, S.COMMITTED),
    (S.COMMITTED, Op.REPROTECT): (S.REPROTECTING, S.INITIAL_REPLICATION),
    (S.PROTECTED, Op.TEST_FAILOVER): (S.TEST_FAILOVER, S.TEST_FAILOVER_COMPLETED),
    (S.TEST_FAILOVER_COMPLETED, Op.TEST_FAILOVER_CLEANUP): (S.TEST_FAILOVER_CLEANUP, S.PROTECTED),
    (S.PROTECTED, Op.DISABLE_PROTECTION): (S.DISABLING_PROTECTION, S.UNPROTECTED),
    (S.INITIAL_REPLICATION, Op.DISABLE_PROTECTION): (S.DISABLING_PROTECTION, S.UNPROTECTED),
    (S.COMMITTED, Op.DISABLE_PROTECTION): (S.DISABLING_PROTECTION, S.UNPROTECTED),
}
RESTING = [
    S.UNPROTECTED, S.INITIAL_REPLICATION, S.PROTECTED, S.FAILED_OVER, S.COMMITTED,
    S.TEST_FAILOVER_COMPLETED,
]  # fmt: skip


@pytest.mark.parametrize("state", RESTING)
@pytest.mark.parametrize("op", list(Operation))
def test_every_operation_in_every_resting_state(state: State, op: Operation) -> None:
    item = ItemState("web-01", state=state, planned=True)
    if (state, op) in LEGAL:
        during, after = LEGAL[(state, op)]
        running = start(item, op)
        assert running.state is during and running.running is op
        assert complete(running).state is after
        failed = fail(running, "boom")
        assert failed.state is state and failed.last_error == "boom" and failed.running is None
    else:
        with pytest.raises(IllegalTransition) as err:
            start(item, op)
        assert err.value.code == "VMDR-E0501"
        assert f"is {state}" in err.value.message and str(op) in err.value.message
        expected = [o for o in Operation if (state, o) in LEGAL]
        assert err.value.remedy == (
            f"In state {state} the allowed operations are: "
            f"{', '.join(map(str, expected)) or 'none'}."
        )


@pytest.mark.parametrize(("state", "op"), list(LEGAL))
def test_nothing_starts_while_an_operation_runs(state: State, op: Operation) -> None:
    running = start(ItemState("db-01", state=state, planned=True), op)
    assert allowed(running) == []
    for other in Operation:
        with pytest.raises(IllegalTransition) as err:
            start(running, other)
        assert f"none until {op} finishes" in err.value.remedy


def test_unplanned_failover_cannot_be_cancelled() -> None:
    item = ItemState("web-01", state=S.PROTECTED)
    over = complete(start(item, Op.UNPLANNED_FAILOVER))
    assert over.planned is False
    assert Op.CANCEL_FAILOVER not in allowed(over)
    with pytest.raises(IllegalTransition):
        start(over, Op.CANCEL_FAILOVER)
    planned = complete(start(item, Op.PLANNED_FAILOVER))
    assert Op.CANCEL_FAILOVER in allowed(planned)
    back = complete(start(planned, Op.CANCEL_FAILOVER))
    assert back.state is S.PROTECTED and back.active_site is Site.PRIMARY


def test_protect_fail_over_commit_reprotect_fail_back_and_protect_again() -> None:
    item = ItemState("web-01")
    item = initial_replication_done(complete(start(item, Op.ENABLE_PROTECTION)))
    assert (item.state, item.active_site, item.direction) == (
        S.PROTECTED, Site.PRIMARY, Direction.PRIMARY_TO_RECOVERY,
    )  # fmt: skip
    item = complete(start(item, Op.PLANNED_FAILOVER))
    assert item.active_site is Site.RECOVERY  # running in the cloud
    item = complete(start(item, Op.COMMIT))
    item = complete(start(item, Op.REPROTECT))
    assert (item.state, item.direction) == (S.INITIAL_REPLICATION, Direction.RECOVERY_TO_PRIMARY)
    item = initial_replication_done(item)
    item = complete(start(item, Op.PLANNED_FAILOVER))  # the failback
    assert item.active_site is Site.PRIMARY and item.state is S.FAILED_OVER
    item = complete(start(item, Op.COMMIT))
    item = initial_replication_done(complete(start(item, Op.REPROTECT)))
    assert (item.state, item.active_site, item.direction) == (
        S.PROTECTED, Site.PRIMARY, Direction.PRIMARY_TO_RECOVERY,
    )  # fmt: skip


def test_test_failover_leaves_the_active_site_alone() -> None:
    item = ItemState("web-01", state=S.PROTECTED)
    item = complete(start(item, Op.TEST_FAILOVER))
    assert item.state is S.TEST_FAILOVER_COMPLETED and item.active_site is Site.PRIMARY
    assert allowed(item) == [Op.TEST_FAILOVER_CLEANUP]
    assert complete(start(item, Op.TEST_FAILOVER_CLEANUP)).state is S.PROTECTED


def test_complete_fail_and_initial_done_need_the_right_state() -> None:
    item = ItemState("web-01", state=S.PROTECTED)
    for fn in (complete, lambda i: fail(i, "x"), initial_replication_done):
        with pytest.raises(IllegalTransition) as err:
            fn(item)
        assert err.value.code == "VMDR-E0501"
    with pytest.raises(IllegalTransition):
        initial_replication_done(start(ItemState("a", state=S.INITIAL_REPLICATION), Op.RESYNC))


def test_the_stored_names_of_states_and_operations_stay_the_asr_ones() -> None:
    """The database, the API, the CLI and scripts hold these strings: a
    rename here would strand every item stored under the old one."""
    from vmdr.model.lifecycle import Operation, State

    assert [s.value for s in State] == [
        "Unprotected", "EnablingProtection", "InitialReplication", "Protected", "Resyncing",
        "PlannedFailover", "UnplannedFailover", "FailedOver", "CancellingFailover", "Committing",
        "Committed", "Reprotecting", "TestFailover", "TestFailoverCompleted",
        "TestFailoverCleanup", "DisablingProtection",
    ]  # fmt: skip
    assert [o.value for o in Operation] == [
        "enableProtection", "testFailover", "testFailoverCleanup", "plannedFailover",
        "unplannedFailover", "commit", "cancelFailover", "reprotect", "resync",
        "disableProtection",
    ]  # fmt: skip
