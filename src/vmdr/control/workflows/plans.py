"""Recovery plans: ordered groups of protected items, with steps between and
inside the groups, run as one durable, resumable job.

A plan's spec::

    {"groups": [
        {"name": "database", "items": ["db-01"],
         "before": [STEP, ...], "after": [STEP, ...]},
        ...],
     "after": [STEP, ...]}                 # once every group is done

    STEP = {"kind": "script", "script": "check-db.sh", "args": ["--fast"], "timeout": 60}
         | {"kind": "manual", "message": "Confirm the storage team is ready"}
         | {"kind": "cutover", "profile": "shop", "site": "recovery" | "primary"}
         | {"kind": "probe", "profile": "shop", "endpoint": "cloud", "timeout": 120}

Running an operation on a plan (``POST /v1/recovery-plans/{plan}/{operation}``,
``control/api/plans.py``) walks the groups in order; the items of one group run the operation in
parallel, and the next group starts only when all of them succeeded. Item
jobs started by a plan leave DNS alone (the plan's own cutover steps move it,
once). Every unit of work (a step, an item's operation) is recorded as done on
the job when it ends; a failure stops the plan with the error, and ``resume``
starts a new job that skips what is done — nothing is redone or lost.

Scripts are files in ``<state>/scripts/`` of the configuration server, named
(never a path) in the spec: a request cannot make the server run anything
else. Their output (the last 8 KiB) is kept on the job.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from vmdr.control.db.models import Job, JobEvent, RecoveryPlan, TrafficProfile
from vmdr.control.jobs import Flow, JobCancelled, JobKind, JobState, StepContext
from vmdr.control.jobs.params import PlanParams
from vmdr.control.scripts import run_script
from vmdr.control.workflows.context import Workflows
from vmdr.control.workflows.operations import find_item, start_operation
from vmdr.model.errors import VmdrError
from vmdr.model.lifecycle import Direction, Operation

__all__ = [
    "APPROVED",
    "CANCELLED",
    "PLAN_OPERATIONS",
    "PlanError",
    "PlanExists",
    "PlanNotFound",
    "PlanOperation",
    "PlanSpec",
    "cancel_waiting",
    "plan_job_kind",
    "waiting",
    "waiting_event",
]


NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


APPROVAL_WAIT = 24 * 3600.0
APPROVED, CANCELLED = "approved", "cancelled"  # the messages a manual step receives


WAITING = "waiting for approval: "


class PlanError(VmdrError):
    code = "VMDR-E0910"
    msg = "recovery plan {plan}: {detail}"
    fix = "Fix the cause, then `vmdr plans resume {plan}`: what is done is not done again."


class PlanNotFound(VmdrError):
    code = "VMDR-E0911"
    http_status = 404
    msg = "no recovery plan {plan!r}"
    fix = "List plans with `vmdr plans list`."


class PlanExists(VmdrError):
    code = "VMDR-E0912"
    http_status = 409
    msg = "a recovery plan named {plan!r} exists already"
    fix = "Choose another name, or delete it first (`vmdr plans delete {plan}`)."


class ScriptStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["script"]
    script: str = Field(pattern=NAME)
    args: list[Annotated[str, Field(max_length=256)]] = Field(default_factory=list, max_length=32)
    timeout: float = Field(default=300.0, gt=0, le=86400)


class ManualStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["manual"]
    message: str = Field(min_length=1, max_length=500)


class CutoverStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["cutover"]
    profile: str = Field(pattern=NAME)
    site: Literal["primary", "recovery"]


class ProbeStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["probe"]
    profile: str = Field(pattern=NAME)
    endpoint: str = Field(pattern=NAME)
    timeout: float = Field(default=120.0, gt=0, le=3600)


Step = Annotated[ScriptStep | ManualStep | CutoverStep | ProbeStep, Field(discriminator="kind")]


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    items: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}$")]] = Field(
        max_length=100
    )
    before: list[Step] = Field(default_factory=list, max_length=50)
    after: list[Step] = Field(default_factory=list, max_length=50)


class PlanSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    groups: list[Group] = Field(min_length=1, max_length=50)
    after: list[Step] = Field(default_factory=list, max_length=50)


PlanOperation = Literal[
    "plannedFailover",
    "unplannedFailover",
    "commit",
    "reprotect",
    "testFailover",
    "testFailoverCleanup",
]


PLAN_OPERATIONS = {
    "plannedFailover": Operation.PLANNED_FAILOVER,
    "unplannedFailover": Operation.UNPLANNED_FAILOVER,
    "commit": Operation.COMMIT,
    "reprotect": Operation.REPROTECT,
    "testFailover": Operation.TEST_FAILOVER,
    "testFailoverCleanup": Operation.TEST_FAILOVER_CLEANUP,
}


def _units(spec: PlanSpec) -> list[tuple[str, dict[str, Any]]]:
    """The plan as a flat list of (key, unit); keys are stable across runs."""
    out: list[tuple[str, dict[str, Any]]] = []
    for g, group in enumerate(spec.groups):
        out += [(f"g{g}.before{i}", s.model_dump()) for i, s in enumerate(group.before)]
        out.append((f"g{g}.items", {"kind": "items", "group": group.name, "items": group.items}))
        out += [(f"g{g}.after{i}", s.model_dump()) for i, s in enumerate(group.after)]
    out += [(f"after{i}", s.model_dump()) for i, s in enumerate(spec.after)]
    return out


class PlanFlow:
    """One run of a plan, as a flow of durable steps (``jobs.kinds.Flow``):
    each unit is a step; a group's items are jobs of their own (children,
    queued with the plan's id as parent) that the plan waits on; a manual
    step waits for a message. After a crash the flow replays from its record:
    nothing done is done again, and it goes on by itself."""

    def __init__(self, wf: Workflows, flow: Flow) -> None:
        self.wf, self.flow = wf, flow

    def run(self) -> None:
        name, spec = self.flow.step("load-plan", self._load)
        self.name = name
        done = set(self.flow.params.get("done", []))
        for key, unit in _units(PlanSpec.model_validate(spec)):
            if key in done:
                continue
            getattr(self, f"_{unit['kind']}")(key, unit)

    def _load(self, ctx: StepContext) -> tuple[str, dict[str, Any]]:
        with self.wf.sessions() as s:
            plan = s.get(RecoveryPlan, ctx.params["plan"])
            if plan is None:
                raise PlanNotFound(plan=ctx.params["plan"])
            done = ctx.params.get("done", [])
            if done:
                ctx.progress("load-plan", 0, f"done in an earlier run: {', '.join(done)}")
            return plan.name, dict(plan.spec)

    def _unit(self, key: str, unit: dict[str, Any], fn: Callable[[StepContext], None]) -> None:
        """A unit as one step, marked done on the job in that step."""

        def run(ctx: StepContext) -> None:
            ctx.progress(key, 0, f"{unit['kind']} starts")
            try:
                fn(ctx)
            except PlanError:
                raise
            except VmdrError as exc:
                raise PlanError(plan=self.name, detail=f"{key} ({unit['kind']}): {exc}") from exc
            self._mark_done(ctx, key)

        self.flow.step(key, run)

    def _mark_done(self, ctx: StepContext, key: str) -> None:
        with self.wf.sessions.begin() as s:
            job = s.get(Job, ctx.job_id)
            assert job is not None
            job.params = {**job.params, "done": [*job.params.get("done", []), key]}
        ctx.progress(key, 0, "done")

    # -- units ----------------------------------------------------------------------------
    def _items(self, key: str, unit: dict[str, Any]) -> None:
        op = PLAN_OPERATIONS[self.flow.params["operation"]]
        done = set(self.flow.params.get("done", []))
        children: dict[str, str] = {}
        for name in unit["items"]:
            if f"{key}:{name}" in done:
                continue
            child = str(uuid.uuid5(uuid.NAMESPACE_URL, f"vmdr:{self.flow.job_id}/{key}/{name}"))
            self.flow.step(f"{key}:{name}", self._starter(key, name, op, child))
            children[name] = child
        failed = []
        for name, child in children.items():  # the group runs in parallel; wait for all
            state, error = self.flow.wait_job(child)
            if state == JobState.SUCCEEDED:
                self.flow.step(f"{key}:{name}:done", self._marker(f"{key}:{name}"))
            else:
                failed.append(f"{name}: {(error or {}).get('code')} {(error or {}).get('message')}")
        if failed:
            raise PlanError(plan=self.name, detail=f"group {unit['group']}: " + "; ".join(failed))
        self.flow.step(key, self._marker(key))

    def _marker(self, key: str) -> Callable[[StepContext], None]:
        return lambda ctx: self._mark_done(ctx, key)

    def _starter(
        self, key: str, name: str, op: Operation, child: str
    ) -> Callable[[StepContext], None]:
        def start(ctx: StepContext) -> None:
            with self.wf.sessions() as s:
                if s.get(Job, child) is not None:  # started by this step's earlier run
                    return
            options = {k: v for k, v in ctx.params.get("options", {}).items() if v}
            with self.wf.sessions() as s:
                row, _ = find_item(self.wf, s, name)
            params = {**options, "skip_cutover": True}
            to_cloud = row.direction == Direction.PRIMARY_TO_RECOVERY
            if to_cloud and op in (Operation.UNPLANNED_FAILOVER, Operation.TEST_FAILOVER):
                params.update(self._group_point(ctx, row.id))
            try:
                job_id, kind = start_operation(self.wf, row.id, op, params, job_id=child,
                                               parent=ctx.job_id)  # fmt: skip
            except VmdrError as exc:
                raise PlanError(plan=self.name, detail=f"{key}: {name}: {exc}") from exc
            ctx.progress(key, 0, f"{name}: {kind} job {job_id}")

        return start

    def _group_point(self, ctx: StepContext, item: str) -> dict[str, Any]:
        """A member of a replication group fails over at the group's point:
        the newest complete one when the plan first needs it, kept on the job
        so that every plan group (and a resumed run) uses the same one."""
        from vmdr.control.workflows.groups import common_point, group_of

        with self.wf.sessions() as s:
            group = group_of(s, item)
            if group is None:
                return {}
            job = s.get(Job, ctx.job_id)
            assert job is not None
            pinned = job.params.get("group_points", {}).get(group.id)
            gseq, seqs = common_point(s, group, pinned)
        if pinned is None:
            with self.wf.sessions.begin() as s:
                job = s.get(Job, ctx.job_id)
                assert job is not None
                points = {**job.params.get("group_points", {}), group.id: gseq}
                job.params = {**job.params, "group_points": points}
            ctx.progress("group-point", 0, f"replication group {group.name}: group point {gseq}")
        return {"recovery_point": seqs[item]}

    def _script(self, key: str, unit: dict[str, Any]) -> None:
        def run(ctx: StepContext) -> None:
            env = {"VMDR_PLAN": self.name, "VMDR_PLAN_OPERATION": ctx.params["operation"],
                   "VMDR_PLAN_STEP": key}  # fmt: skip
            done = run_script(self.wf.state_dir, unit["script"], unit["args"], unit["timeout"], env)
            ctx.progress(key, 0, f"script {unit['script']} exited {done.returncode}: {done.output}")
            if done.returncode != 0:
                raise PlanError(
                    plan=self.name, detail=f"script {unit['script']} exited {done.returncode}"
                )

        self._unit(key, unit, run)

    def _manual(self, key: str, unit: dict[str, Any]) -> None:
        self.flow.step(f"{key}:ask", lambda ctx: ctx.progress(
            key, 0, f"{WAITING}{unit['message']}"))  # fmt: skip
        answer = self.flow.receive(key, APPROVAL_WAIT)
        if answer == CANCELLED:
            raise JobCancelled(job=self.flow.job_id, step=key)
        if answer != APPROVED:
            raise PlanError(plan=self.name, detail=f"{key} was not approved in time")
        self.flow.step(key, self._marker(key))

    def _cutover(self, key: str, unit: dict[str, Any]) -> None:
        def run(ctx: StepContext) -> None:
            profile = self._profile(unit["profile"])
            address = self.wf.traffic.cutover(profile, unit["site"])
            ctx.progress(key, 0, f"{unit['profile']} now points at {address} ({unit['site']})")

        self._unit(key, unit, run)

    def _probe(self, key: str, unit: dict[str, Any]) -> None:
        def run(ctx: StepContext) -> None:
            from vmdr.control.db.models import TrafficEndpoint

            profile = self._profile(unit["profile"])
            deadline = time.monotonic() + unit["timeout"]
            while True:
                with self.wf.sessions() as s:
                    e = s.scalars(
                        select(TrafficEndpoint).where(
                            TrafficEndpoint.profile_id == profile,
                            TrafficEndpoint.name == unit["endpoint"],
                        )
                    ).first()
                    if e is None:
                        raise PlanError(plan=self.name, detail=f"no endpoint {unit['endpoint']}")
                    endpoint_id, healthy, detail = e.id, e.healthy, e.detail
                if healthy:
                    return
                if time.monotonic() > deadline:
                    raise PlanError(
                        plan=self.name, detail=f"probe of {unit['endpoint']} did not pass: {detail}"
                    )
                self.wf.traffic.probe_due(force={endpoint_id})
                ctx.sleep(1.0)

        self._unit(key, unit, run)

    def _profile(self, name: str) -> str:
        with self.wf.sessions() as s:
            found = s.scalars(select(TrafficProfile.id).where(TrafficProfile.name == name)).first()
        if found is None:
            raise PlanError(plan=self.name, detail=f"no traffic profile {name!r}")
        return found


def plan_job_kind(wf: Workflows) -> JobKind:
    return JobKind("recoveryPlan", flow=lambda flow: PlanFlow(wf, flow).run(), queue="plans",
                   params=PlanParams)  # fmt: skip


def waiting_event(s: Any, job_id: str) -> JobEvent | None:
    """The newest "waiting for approval" event of a plan's job."""
    event: JobEvent | None = s.scalars(
        select(JobEvent)
        .where(
            JobEvent.job_id == job_id,
            JobEvent.kind == "progress",
            JobEvent.message.like(f"{WAITING}%"),
        )
        .order_by(JobEvent.id.desc())
    ).first()
    return event


def cancel_waiting(wf: Workflows, job_id: str) -> None:
    """A cancelled plan that waits, or is about to wait, for an approval
    stops waiting: every manual step it has not passed gets the message (one
    sent before the wait begins is received when it does)."""
    with wf.sessions() as s:
        job = s.get(Job, job_id)
        plan = s.get(RecoveryPlan, job.params.get("plan")) if job is not None else None
        if job is None or plan is None or job.kind != "recoveryPlan":
            return
        done = set(job.params.get("done", []))
        manual = [key for key, unit in _units(PlanSpec.model_validate(plan.spec))
                  if unit["kind"] == "manual" and key not in done]  # fmt: skip
    for key in manual:
        wf.engine.send(job_id, key, CANCELLED)


def waiting(s: Any, job_id: str) -> str | None:
    """The manual step a running plan waits on now (its message), if any."""
    event = waiting_event(s, job_id)
    if event is None:
        return None
    approved = s.scalars(
        select(JobEvent).where(
            JobEvent.job_id == job_id, JobEvent.step == event.step, JobEvent.kind == "approved"
        )
    ).first()
    return None if approved is not None else str(event.message)
