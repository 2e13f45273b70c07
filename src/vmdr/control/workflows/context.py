"""What every workflow step needs: the database, the data plane, a vSphere
session to the machine's vCenter, and the protected item's life cycle kept in
step with ``model.lifecycle`` (the one place its rules live).

A step is idempotent (the job runner may run it twice after a crash): it
checks what is already done, then does the rest. Item settings are JSON; a
step replaces the dict rather than mutating it, so SQLAlchemy sees the
change.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from vmdr.blocks.durable import write_atomically
from vmdr.control.dataplane import DataPlane
from vmdr.control.db.item_settings import ItemSettings
from vmdr.control.db.models import (
    Machine,
    ProtectedItem,
    RecoveryPoint,
    ReplicationGroup,
    VCenter,
)
from vmdr.control.jobs import JobKind, StepContext
from vmdr.control.jobs.params import OperationParams
from vmdr.control.jobs.store import active_job
from vmdr.control.secrets import SecretBox
from vmdr.model import lifecycle
from vmdr.model.errors import VmdrError
from vmdr.model.lifecycle import Direction, ItemState, Operation, Site, State
from vmdr.providers.vsphere.vms import VmOperations

if TYPE_CHECKING:
    from vmdr.control.jobs.engine import Engine

__all__ = ["DEFAULT_INTERVAL", "ItemGone", "Workflows", "replicating"]

DEFAULT_INTERVAL = 300.0


class ItemGone(VmdrError):
    code = "VMDR-E0543"
    http_status = 404
    msg = "no protected item {item}"
    fix = "List protected items with `vmdr items list`; protect a machine with `vmdr protect VM`."


def to_state(row: ProtectedItem, name: str) -> ItemState:
    return ItemState(
        name=name,
        state=State(row.state),
        active_site=Site(row.active_site),
        direction=Direction(row.direction),
        running=Operation(row.running) if row.running else None,
        previous=State(row.previous) if row.previous else None,
        planned=row.planned,
        last_error=row.last_error,
    )


def replicating(item: ItemState) -> bool:
    """Does the item replicate to the cloud between operations? (A test
    failover leaves replication running: it works on copies.)"""
    return (
        item.running is None
        and item.direction is Direction.PRIMARY_TO_RECOVERY
        and item.state in (State.PROTECTED, State.TEST_FAILOVER_COMPLETED)
    )


def jitter(interval: float) -> float:
    """Up to ±10 % of an interval (at most ±30 s), so that items protected
    together do not all start their cycles in the same second."""
    spread = min(interval * 0.1, 30.0)
    return random.uniform(-spread, spread)


def store_state(row: ProtectedItem, state: ItemState) -> None:
    row.state, row.active_site, row.direction = state.state, state.active_site, state.direction
    row.running = state.running.value if state.running else None
    row.previous = state.previous.value if state.previous else None
    row.planned, row.last_error = state.planned, state.last_error


@dataclass
class Workflows:
    sessions: sessionmaker[Session]
    engine: Engine
    secrets: Callable[[], SecretBox]
    state_dir: Path
    traffic: Any = None  # control.traffic.TrafficManager, for cutover steps
    # Where the outside world is: the data-plane file, or (unit tests of
    # steps) a plane whose compute and roles are in-memory fakes.
    load_plane: Callable[[Path], DataPlane] = DataPlane.load
    vcenters: Callable[[str], AbstractContextManager[VmOperations]] | None = None

    def cutover(self, ctx: StepContext, site: str) -> None:
        """Move the item's DNS names to ``site`` (after the item's state changed)."""
        if self.traffic is None or ctx.args(OperationParams).skip_cutover:
            return  # a recovery plan moves DNS itself, once, where its spec says
        for address in self.traffic.cutover_item(ctx.params["item"], site):
            ctx.progress("cutover", 0, f"DNS now points at {address} ({site})")

    @property
    def dataplane(self) -> DataPlane:
        return self.load_plane(self.state_dir)  # read per use: the lab may write it late

    def interval(self) -> float:
        """Seconds between two replication cycles of an item (``replication_interval``)."""
        return max(self.dataplane.replication_interval or DEFAULT_INTERVAL, 1.0)

    # -- job kinds -------------------------------------------------------------------
    def step(self, fn: Callable[..., None], *args: Any) -> Callable[[StepContext], None]:
        """A job step calling ``fn(self, ctx, *args)``."""
        return lambda ctx: fn(self, ctx, *args)

    def operation_kind(
        self, name: str, steps: list[tuple[str, Any]], cancel_before: int | None = 0,
        site: str = "",
    ) -> JobKind:  # fmt: skip
        """An operation's job: its steps, then ``complete`` (the item reaches
        its end state), then, with ``site``, the DNS cutover to that site."""
        after = [("cutover", lambda ctx: self.cutover(ctx, site))] if site else []
        steps = [*steps, ("complete", self.complete), *after]
        return JobKind(name, steps, cancel_before, self.failed, params=OperationParams)

    # -- the item --------------------------------------------------------------------
    def item(self, s: Session, item_id: str) -> tuple[ProtectedItem, Machine]:
        row = s.get(ProtectedItem, item_id)
        if row is None:
            raise ItemGone(item=item_id)
        machine = s.get(Machine, row.machine_id)
        assert machine is not None
        return row, machine

    def items_with_machines(
        self, s: Session, ids: set[str] | list[str]
    ) -> list[tuple[ProtectedItem, Machine]]:
        """Several items with their machines, in one query."""
        if not ids:
            return []
        rows = s.execute(
            select(ProtectedItem, Machine)
            .join(Machine, Machine.id == ProtectedItem.machine_id)
            .where(ProtectedItem.id.in_(list(ids)))
        ).all()
        return [(row, machine) for row, machine in rows]

    def settings(self, item_id: str) -> ItemSettings:
        with self.sessions() as s:
            return ItemSettings.of(self.item(s, item_id)[0].settings)

    def update_settings(self, item_id: str, **changes: Any) -> ItemSettings:
        with self.sessions.begin() as s:
            row, _ = self.item(s, item_id)
            new = ItemSettings.of(row.settings).changed(**changes)
            row.settings = new.stored()
            return new

    def transition(self, item_id: str, change: Callable[[ItemState], ItemState]) -> ItemState:
        with self.sessions.begin() as s:
            return self.transition_in(s, item_id, change)

    def transition_in(
        self, s: Session, item_id: str, change: Callable[[ItemState], ItemState]
    ) -> ItemState:
        """The item's state changed in the caller's transaction; its next
        replication cycle is scheduled when it starts replicating and
        unscheduled when it stops."""
        row, machine = self.item(s, item_id)
        new = change(to_state(row, machine.name))
        store_state(row, new)
        if not replicating(new):
            row.cycle_anchor = None
        elif row.cycle_anchor is None:  # its first cycle one interval from now
            row.cycle_anchor = time.time() + jitter(self.interval())
        return new

    def complete(self, ctx: StepContext) -> None:
        """The last step of an operation: the item reaches its end state
        (idempotent: a second run finds nothing running and does nothing)."""

        def done(item: ItemState) -> ItemState:
            if item.running is None:
                return item
            after = lifecycle.complete(item)
            if after.state is State.INITIAL_REPLICATION:
                # Every job that ends in InitialReplication (enableProtection,
                # reprotect) ran the initial sync as its own steps.
                after = lifecycle.initial_replication_done(after)
            return after

        self.transition(ctx.params["item"], done)

    def failed(self, ctx: StepContext, error: dict[str, Any]) -> None:
        def back(item: ItemState) -> ItemState:
            if item.running is None:
                return item
            return lifecycle.fail(item, f"{error.get('code')}: {error.get('message')}")

        self.transition(ctx.params["item"], back)

    # -- recovery points ---------------------------------------------------------------
    def add_point(self, item_id: str, tag: str, kind: str, locations: dict[int, str]) -> int:
        with self.sessions.begin() as s:
            return add_point_rows(s, item_id, tag, kind, locations, time.time())

    def point(self, item_id: str, seq: int | None = None) -> tuple[int, dict[int, str]]:
        """A recovery point's disk locations (the latest when ``seq`` is None)."""
        with self.sessions() as s:
            query = select(RecoveryPoint).where(RecoveryPoint.item_id == item_id)
            rows = list(s.scalars(query))
        if not rows:
            from vmdr.model.prechecks import PrecheckFailed

            raise PrecheckFailed(
                summary="failover needs at least one recovery point, and this item has none",
                remedies="Wait for initial replication to finish (`vmdr jobs list`).",
                code="VMDR-E0822",
            )
        chosen = seq if seq is not None else max(r.seq for r in rows)
        locations = {r.disk_unit: r.location or "" for r in rows if r.seq == chosen}
        if not locations:
            from vmdr.model.prechecks import PrecheckFailed

            known = ", ".join(str(n) for n in sorted({r.seq for r in rows}))
            raise PrecheckFailed(
                summary=f"this item has no recovery point {chosen}",
                remedies=f"Choose one of {known} (`vmdr items points ITEM`), or omit it for "
                "the latest.",
                code="VMDR-E0822",
            )
        return chosen, locations

    # -- vSphere -----------------------------------------------------------------------
    @contextmanager
    def vsphere(self, vcenter_id: str) -> Iterator[VmOperations]:
        """The VM operations of one vCenter or ESX host (a session for the
        ``with`` block); a unit test of steps sets ``vcenters`` instead."""
        if self.vcenters is not None:
            with self.vcenters(vcenter_id) as vms:
                yield vms
            return
        from vmdr.providers.vsphere.session import Endpoint, session
        from vmdr.providers.vsphere.vms import VmControl

        with self.sessions() as s:
            vc = s.get(VCenter, vcenter_id)
            if vc is None:
                raise VmdrError(detail=f"vCenter {vcenter_id} is gone from the database")
            ca = None
            if vc.ca_pem:
                ca = self.state_dir / "vcenter-ca" / f"{vc.id}.pem"
                ca.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(ca, vc.ca_pem.encode(), mode=0o644)
            endpoint = Endpoint(
                url=vc.url.rstrip("/") + ("" if vc.url.endswith("/sdk") else "/sdk"),
                user=vc.user,
                password=self.secrets().open(vc.secret_enc),
                ca_file=ca,
                fingerprint=vc.fingerprint,
            )
        with session(endpoint) as si:
            yield VmControl(si)


class GroupCutting(VmdrError):
    code = "VMDR-E0917"
    http_status = 409
    msg = "{item} is in replication group {group}, which is cutting a group point (job {job})"
    fix = "Retry in a moment: a group point takes seconds (`vmdr jobs watch {job}`)."


def group_of(s: Session, item_id: str) -> ReplicationGroup | None:
    """The replication group the item is a member of, if any."""
    for group in s.scalars(select(ReplicationGroup)):
        if item_id in group.items:
            return group
    return None


def refuse_while_group_cuts(s: Session, item_id: str, name: str) -> None:
    """An operation on a member waits for its group's point (``groups.py``):
    the cut reads and snapshots every member's disks."""
    group = group_of(s, item_id)
    if group is None:
        return
    job = active_job(s, group.id)
    if job is not None:
        raise GroupCutting(item=name, group=group.name, job=job.id)


def add_point_rows(
    s: Session,
    item_id: str,
    tag: str,
    kind: str,
    locations: dict[int, str],
    when: float,
    group: tuple[str, int] | None = None,
) -> int:
    """One recovery point (a row per disk) in the caller's transaction; its seq."""
    seq = 1 + (
        s.scalar(select(func.max(RecoveryPoint.seq)).where(RecoveryPoint.item_id == item_id)) or 0
    )
    for unit, location in sorted(locations.items()):
        s.add(
            RecoveryPoint(
                item_id=item_id, disk_unit=unit, seq=seq, time=when, tag=tag, kind=kind,
                location=location, group_id=group[0] if group else None,
                group_seq=group[1] if group else None,
            )
        )  # fmt: skip
    return seq
