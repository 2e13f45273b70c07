"""The replication scheduler on SQLite and PostgreSQL: a tick is a constant
number of statements whatever the number of items; due items get one cycle
each; a changed interval applies at once; a busy item is retried, not lost;
a whole group gets one group cycle instead of its members' own."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from vmdr.control.db.models import Job, ProtectedItem, ReplicationGroup
from vmdr.control.workflows.context import Workflows
from vmdr.control.workflows.replicator import RETRY, schedule_due
from vmdr.model.lifecycle import State

from .rows import INTERVAL, add_items, count_statements, interval


def jobs_of(wf: Workflows, kind: str) -> list[Job]:
    with wf.sessions() as s:
        return list(s.scalars(select(Job).where(Job.kind == kind)))


def test_a_tick_with_nothing_due_costs_the_same_for_50_or_500_items(wf: Workflows) -> None:
    now = time.time()
    add_items(wf, 50, anchor=now)
    seen, stop = count_statements(wf)
    assert schedule_due(wf, now + 10) == []
    small = len(seen)
    add_items(wf, 450, anchor=now)
    seen.clear()
    assert schedule_due(wf, now + 10) == []
    stop()
    assert len(seen) == small <= 3, seen


def test_due_items_get_one_cycle_each_and_their_next_one_interval_later(wf: Workflows) -> None:
    now = time.time()
    due = add_items(wf, 5, anchor=now - INTERVAL - 1)
    add_items(wf, 20, anchor=now)  # not due
    started = schedule_due(wf, now)
    assert len(started) == 5
    assert sorted(j.item_id for j in jobs_of(wf, "replicate")) == sorted(due)  # type: ignore[type-var]
    with wf.sessions() as s:
        anchors = [s.get(ProtectedItem, i).cycle_anchor for i in due]  # type: ignore[union-attr]
    assert all(a is not None and abs(a - now) <= 30 for a in anchors)  # ±10 %, at most 30 s
    assert schedule_due(wf, now + 1) == []  # queued once, not again next tick


def test_a_changed_interval_applies_at_the_next_tick(wf: Workflows, tmp_path: Path) -> None:
    now = time.time()
    add_items(wf, 3, anchor=now - 20)
    assert schedule_due(wf, now) == []  # 20 s ago, interval 300 s
    interval(tmp_path, 10)
    assert len(schedule_due(wf, now)) == 3


def test_a_busy_item_is_tried_again_shortly(wf: Workflows) -> None:
    now = time.time()
    (item,) = add_items(wf, 1, anchor=now - INTERVAL - 1)
    wf.engine.submit("recoveryPoint", {"item": item, "tag": "mine"}, item)  # holds its lock
    assert schedule_due(wf, now) == []
    with wf.sessions() as s:
        anchor = s.get(ProtectedItem, item).cycle_anchor  # type: ignore[union-attr]
    assert anchor is not None and anchor + INTERVAL == pytest.approx(now + RETRY)
    assert schedule_due(wf, now + RETRY - 1) == []
    with wf.sessions.begin() as s:  # the user's job ends
        s.execute(update(Job).where(Job.item_id == item).values(state="succeeded"))
    assert len(schedule_due(wf, now + RETRY)) == 1


def test_a_whole_group_cycles_together_and_a_broken_one_member_by_member(wf: Workflows) -> None:
    now = time.time()
    members = add_items(wf, 2, anchor=now - INTERVAL - 1)
    with wf.sessions.begin() as s:
        s.add(ReplicationGroup(name="shop", items=members, cycle_anchor=0.0))
    schedule_due(wf, now)
    assert [j.kind for j in jobs_of(wf, "groupPoint")] == ["groupPoint"]
    assert jobs_of(wf, "replicate") == []  # members wait for their group's point
    with wf.sessions.begin() as s:  # the group point is done; one member fails over
        s.execute(update(Job).values(state="succeeded"))
        s.execute(update(ProtectedItem).where(ProtectedItem.id == members[0])
                  .values(state=State.FAILED_OVER, cycle_anchor=None))  # fmt: skip
        s.execute(update(ProtectedItem).where(ProtectedItem.id == members[1])
                  .values(cycle_anchor=0.0))  # fmt: skip
        s.execute(update(ReplicationGroup).values(cycle_anchor=0.0))
    schedule_due(wf, now)
    assert [j.item_id for j in jobs_of(wf, "replicate")] == [members[1]]  # alone
    assert len(jobs_of(wf, "groupPoint")) == 1  # no new group cycle


def test_a_queued_cycle_gives_way_to_an_operation_and_a_late_one_does_nothing(
    wf: Workflows,
) -> None:
    from vmdr.control.jobs import StepContext
    from vmdr.control.workflows.operations import start_operation
    from vmdr.control.workflows.replicator import replicate_kind
    from vmdr.model.lifecycle import Operation

    now = time.time()
    (item,) = add_items(wf, 1, anchor=now - INTERVAL - 1)
    (cycle,) = schedule_due(wf, now)  # queued behind other cycles, say
    _, kind = start_operation(wf, item, Operation.UNPLANNED_FAILOVER, {})
    assert kind == "unplannedFailover"
    with wf.sessions() as s:
        old = s.get(Job, cycle)
        assert old is not None and old.state == "cancelled"
        assert old.error is not None and old.error["message"] == "gave way to an operation"
        row = s.get(ProtectedItem, item)
        assert row is not None and row.running == "unplannedFailover" and row.cycle_anchor is None
    # A cycle that runs anyway (a retry of an old one) leaves the disks alone:
    # the data plane is not even configured here, so touching them would fail.
    said: list[str | None] = []

    class Said:
        def progress(self, job_id: str, step: str, done: int, message: str | None) -> None:
            said.append(message)

    for name, step in replicate_kind(wf).steps:
        step(StepContext("old-cycle", {"item": item}, Said(), step=name))
    assert said == ["skipped: the item does not replicate to the cloud now"] * 3
