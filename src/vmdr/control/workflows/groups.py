"""Replication groups: protected items whose recovery points are cut together,
so that an application spread over several VMs (a database and the app
that writes to it) comes back from one moment, not from one moment per VM.

A group point is one ``groupPoint`` job for all members:

    presync  each member's changed blocks to its page blobs, with the
             application running (the bulk of the bytes)
    cut      quiesce (the group's script, if it has one), then each member's
             blocks changed since the presync, then a page-blob snapshot of
             every disk of every member, then thaw (always, even on failure);
             the points are stored in one transaction, every member's row
             with the same ``group_id``, ``group_seq`` and time
    prune    group points beyond ``point_retention`` are deleted

All or nothing: if any member fails during the cut, the snapshots already
taken are deleted and no member gets the point.

How consistent is it? With a quiesce script (the group's
``{"script": ..., "thaw": ..., "timeout": ...}``, files in
``<state>/scripts/``; ``fsfreeze`` or the database's own backup mode through
guest operations in production), no member writes between the quiesce and
the thaw, so every member's disks are read at one common instant: the point
is consistent across the VMs. Without one, the members are read one after
another in the cut step: each VM's point is crash-consistent, the group's is
not strictly one instant. The cut's delta sync hashes every block of the
members' disks (no changed-block tracking on the source here), so the
quiesce lasts about as long as that: a second for the lab's disks. Either
way, failing over the group uses one group point for every member.

While members are in a group, the replicator cuts group points (one cycle
for the group every ``replication_interval``) instead of per-item points.

The routes are in ``control/api/groups.py``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vmdr.control.db.models import RecoveryPoint, ReplicationGroup, by_id_or_name
from vmdr.control.jobs import JobKind, StepContext
from vmdr.control.jobs.params import GroupPointParams
from vmdr.control.jobs.store import active_job
from vmdr.control.scripts import run_script
from vmdr.control.workflows import metrics
from vmdr.control.workflows.context import Workflows, add_point_rows, group_of
from vmdr.model.errors import VmdrError
from vmdr.model.lifecycle import Direction, State

__all__ = ["check_ready", "common_point", "complete_points", "find_group", "group_kind", "group_of"]

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ITEM = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}$"
REPLICATING = (State.PROTECTED, State.TEST_FAILOVER_COMPLETED)
log = logging.getLogger(__name__)


class GroupNotFound(VmdrError):
    code = "VMDR-E0914"
    http_status = 404
    msg = "no replication group {group!r}"
    fix = "List groups with `vmdr groups list`."


class GroupExists(VmdrError):
    code = "VMDR-E0915"
    http_status = 409
    msg = "{detail}"
    fix = "Choose another name, or delete the other group first (`vmdr groups delete NAME`)."


class GroupRefused(VmdrError):
    code = "VMDR-E0916"
    http_status = 409
    msg = "replication group {group}: {detail}"
    fix = "{fix}"


class Quiesce(BaseModel):
    model_config = ConfigDict(extra="forbid")
    script: str = Field(pattern=NAME, description="run before the cut (a file in scripts/)")
    thaw: str = Field(pattern=NAME, description="run after the cut, always")
    timeout: float = Field(default=60.0, gt=0, le=3600)


def find_group(s: Session, ident: str) -> ReplicationGroup:
    group = by_id_or_name(s, ReplicationGroup, ident)
    if group is None:
        raise GroupNotFound(group=ident)
    return group


def complete_points(s: Session, group: ReplicationGroup) -> dict[int, dict[str, Any]]:
    """Group points every member still has: group_seq -> {time, items: {item: seq}}."""
    rows = s.execute(
        select(
            RecoveryPoint.group_seq, RecoveryPoint.item_id, RecoveryPoint.seq, RecoveryPoint.time
        )
        .where(RecoveryPoint.group_id == group.id)
        .distinct()
    ).all()
    points: dict[int, dict[str, Any]] = {}
    for gseq, item, seq, when in rows:
        if gseq is None:
            continue
        points.setdefault(gseq, {"time": when, "items": {}})["items"][item] = seq
    members = set(group.items)
    return {g: p for g, p in sorted(points.items()) if set(p["items"]) == members}


def common_point(
    s: Session, group: ReplicationGroup, wanted: int | None = None
) -> tuple[int, dict[str, int]]:
    """The group point to fail over to: ``wanted``, else the newest complete one."""
    points = complete_points(s, group)
    if wanted is not None and wanted in points:
        return wanted, points[wanted]["items"]
    if wanted is None and points:
        newest = max(points)
        return newest, points[newest]["items"]
    known = ", ".join(str(g) for g in points) or "none yet"
    raise GroupRefused(
        group=group.name,
        detail=f"no complete group point {wanted or ''}".rstrip() + f" (complete: {known})",
        fix="Cut one with `vmdr groups point NAME`, or name one of the complete points.",
    )


# -- the groupPoint job ------------------------------------------------------------------
def _members(wf: Workflows, ctx: StepContext) -> tuple[ReplicationGroup, list[str]]:
    with wf.sessions() as s:
        group = find_group(s, ctx.params["group"])
        s.expunge(group)
    return group, list(group.items)


def check_ready(wf: Workflows, group: ReplicationGroup) -> None:
    """Every member protected to the cloud (a test failover leaves replication
    running) with no operation and no job of its own."""
    problems = []
    with wf.sessions() as s:
        for item in group.items:
            row, machine = wf.item(s, item)
            if (
                row.state not in REPLICATING
                or row.direction != Direction.PRIMARY_TO_RECOVERY
                or row.running is not None
            ):
                busy = f" running {row.running}" if row.running else ""
                problems.append(f"{machine.name} is {row.state}{busy}")
            job = active_job(s, item)
            if job is not None:  # e.g. its last per-item cycle from before the group
                problems.append(f"{machine.name} has job {job.id} ({job.kind}) running")
    if problems:
        raise GroupRefused(
            group=group.name,
            detail="a group point needs every member protected to the cloud and idle: "
            + "; ".join(problems),
            fix="Wait for the members' operations to end, or take the member out of the group.",
        )


def _presync(wf: Workflows, ctx: StepContext) -> None:
    from vmdr.control.workflows.to_cloud import last_sync_bytes, sync_disks

    group, items = _members(wf, ctx)
    check_ready(wf, group)
    for item in items:
        sync_disks(wf, ctx.with_params(item=item), "presync")
        wf.update_settings(item, group_presync_bytes=last_sync_bytes(wf, item))


def _cut(wf: Workflows, ctx: StepContext) -> None:
    """Quiesce, sync the deltas, snapshot every disk, thaw; then store the
    points. Every snapshot taken is deleted on every failure before the
    points are stored; the thaw runs whenever the quiesce was started."""
    from vmdr.control.workflows.to_cloud import last_sync_bytes, sync_disks
    from vmdr.providers.azure.pageblob import snapshot

    group, items = _members(wf, ctx)
    check_ready(wf, group)
    env = {"VMDR_GROUP": group.name, "VMDR_GROUP_ITEMS": " ".join(items)}
    quiesce = group.quiesce
    taken: dict[str, dict[int, str]] = {item: {} for item in items}
    moved: dict[str, int] = {}
    quiesced = False
    thaw_error: VmdrError | None = None
    try:
        if quiesce:
            quiesced = True  # even a script that timed out may have frozen the application
            done = run_script(
                wf.state_dir, quiesce["script"], [group.name], quiesce["timeout"], env
            )
            ctx.progress(
                "cut", 0, f"quiesce {quiesce['script']} exited {done.returncode}: {done.output}"
            )
            if done.returncode != 0:
                raise GroupRefused(
                    group=group.name,
                    detail=f"quiesce script exited {done.returncode}",
                    fix="See the script's output on the job (`vmdr jobs show JOB`).",
                )
        for item in items:
            sync_disks(wf, ctx.with_params(item=item), "cut")
            moved[item] = last_sync_bytes(wf, item) + int(
                wf.settings(item).group_presync_bytes or 0
            )
        when = time.time()
        for item in items:
            for d in wf.settings(item).disks:
                taken[item][d.unit] = snapshot(d.blob)
    except BaseException:
        _discard(taken)
        raise
    finally:
        if quiesced:
            thaw_error = _thaw(wf, ctx, group, env)
    try:
        # An unplanned failover may have taken a member meanwhile (it is
        # never held back by a cut): then this point is not the group's.
        check_ready(wf, group)
        gseq = _store(wf, ctx, group, taken, when, "app" if quiesce else "crash", moved)
    except BaseException:
        _discard(taken)
        raise
    if thaw_error is not None:  # the point is good; the application needs a hand
        raise thaw_error
    ctx.progress("cut", sum(moved.values()), f"group point {gseq} at {when:.3f}")


def _store(
    wf: Workflows,
    ctx: StepContext,
    group: ReplicationGroup,
    taken: dict[str, dict[int, str]],
    when: float,
    kind: str,
    moved: dict[str, int],
) -> int:
    with wf.sessions.begin() as s:
        gseq = 1 + (
            s.scalar(
                select(func.max(RecoveryPoint.group_seq)).where(RecoveryPoint.group_id == group.id)
            )
            or 0
        )
        for item, locations in taken.items():
            add_point_rows(s, item, f"group:{group.name}", kind, locations, when, (group.id, gseq))
            metrics.record_cycle(s, item, ctx.job_id, moved[item])
    for item in taken:
        wf.update_settings(item, replication_error=None, replicated_at=when)
    return gseq


def _discard(taken: dict[str, dict[int, str]]) -> None:
    """Delete the snapshots of a cut that will not be stored, each on its own."""
    from vmdr.providers.azure.pageblob import delete

    for locations in taken.values():
        for location in locations.values():
            try:
                delete(location)
            except Exception:  # the others still go; this one is logged
                log.exception("could not delete snapshot %s of a failed group cut", location)


def _thaw(
    wf: Workflows, ctx: StepContext, group: ReplicationGroup, env: dict[str, str]
) -> VmdrError | None:
    """Run the thaw script; its failure, returned, never hides the cut's own."""
    assert group.quiesce is not None
    script = group.quiesce["thaw"]
    fix = "The application may still be quiesced: thaw it by hand, then fix the script."
    try:
        done = run_script(wf.state_dir, script, [group.name], group.quiesce["timeout"], env)
    except VmdrError as exc:
        ctx.progress("cut", 0, f"thaw {script} failed: {exc.message}")
        return GroupRefused(group=group.name, detail=f"thaw failed: {exc.message}", fix=fix)
    ctx.progress("cut", 0, f"thaw {script} exited {done.returncode}: {done.output}")
    if done.returncode != 0:
        return GroupRefused(
            group=group.name, detail=f"thaw script exited {done.returncode}", fix=fix
        )
    return None


def _prune(wf: Workflows, ctx: StepContext) -> None:
    from vmdr.control.workflows.replicator import prune_continuous, prune_points

    group, items = _members(wf, ctx)
    for item in items:  # points from before the group, or from a spell alone
        prune_continuous(wf, item)
    prune_points(wf, RecoveryPoint.group_id == group.id, RecoveryPoint.group_seq)


def group_kind(wf: Workflows) -> JobKind:
    def failed(ctx: StepContext, error: dict[str, Any]) -> None:
        with wf.sessions() as s:
            group = s.scalars(
                select(ReplicationGroup).where(ReplicationGroup.id == ctx.params["group"])
            ).first()
            items = list(group.items) if group else []
        for item in items:
            wf.update_settings(item, replication_error=error)

    return JobKind(
        "groupPoint",
        [
            ("presync", lambda ctx: _presync(wf, ctx)),
            ("cut", lambda ctx: _cut(wf, ctx)),
            ("prune", lambda ctx: _prune(wf, ctx)),
        ],
        None,
        failed,
        queue="replication",
        params=GroupPointParams,
    )
