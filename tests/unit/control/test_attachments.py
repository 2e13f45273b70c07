"""Disks left on the master target's VM: which items hold attached targets
they do not need, and the job that releases them (``attachments.py``)."""

from __future__ import annotations

from typing import Any

from vmdr.control.db.models import ProtectedItem
from vmdr.control.workflows.attachments import release_kind, stale_items
from vmdr.control.workflows.context import Workflows
from vmdr.control.workflows.replications import attach_targets
from vmdr.model.lifecycle import Direction, State

from .items import item, run
from .outside import MemoryPlane, MemoryVms

MT = "mt-01"


def set_state(
    wf: Workflows, ident: str, state: State, direction: Direction, running: Any = None
) -> None:
    with wf.sessions.begin() as s:
        row = s.get(ProtectedItem, ident)
        assert row is not None
        row.state, row.direction, row.running = state, direction, running


def release(wf: Workflows, ident: str) -> list[str | None]:
    events = run(release_kind(wf), "release", {"item": ident}, job="job-1")
    return [message for _, _, message in events.seen]


def test_a_reprotect_that_failed_after_its_attach_leaves_disks_that_are_released(
    wf: Workflows, vms: MemoryVms, plane: MemoryPlane
) -> None:
    ident = item(wf)
    attach_targets(wf, ident)  # the reprotect attached them, then failed
    set_state(wf, ident, State.COMMITTED, Direction.RECOVERY_TO_PRIMARY)
    assert len(vms.attached[MT]) == 2 and stale_items(wf) == [ident]

    assert release(wf, ident) == ["2 disk(s) detached from the master target's VM"]
    assert vms.attached[MT] == {}
    # Its replications were told to stop, the master target to forget them.
    assert sorted(plane.ps().stopped) == [(f"fb-{ident}-d0", True), (f"fb-{ident}-d1", True)]
    assert all(t.device is None for t in wf.settings(ident).failback_targets)
    assert stale_items(wf) == []  # nothing held any more: no job next time
    assert release(wf, ident) == ["0 disk(s) detached from the master target's VM"]


def test_an_item_replicating_home_or_in_an_operation_keeps_its_disks(
    wf: Workflows, vms: MemoryVms
) -> None:
    ident = item(wf)  # protected, recovery -> primary: replicating home
    attach_targets(wf, ident)
    assert stale_items(wf) == []
    assert release(wf, ident) == ["still needed: the item replicates home"]
    assert len(vms.attached[MT]) == 2

    set_state(wf, ident, State.COMMITTED, Direction.RECOVERY_TO_PRIMARY, running="reprotect")
    assert stale_items(wf) == []  # the operation attaches or detaches them itself


def test_an_item_whose_targets_were_never_attached_is_left_alone(
    wf: Workflows, vms: MemoryVms
) -> None:
    ident = item(wf)
    set_state(wf, ident, State.COMMITTED, Direction.RECOVERY_TO_PRIMARY)
    assert stale_items(wf) == []
