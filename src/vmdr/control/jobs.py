"""Durable jobs: a named sequence of idempotent steps, persisted before and
after each step, so a configuration server killed mid-job resumes it.

A job's row holds ``step``, the index of the next step to run. Running step
``i`` is: an event ``start`` (committed), the step itself, then in one
transaction an event ``end`` and ``step = i + 1``. After a kill -9 between
the two commits the step runs again on restart — which is why every step
must be idempotent (check, then act). Between steps the runner honours a
cancel request if the job's kind allows cancelling at that point.

At most one job per protected item is queued or running: a partial unique
index on ``jobs(item_id)`` says so in the database itself, so two
configuration-server threads (or processes) racing cannot both win.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from vmdr.control.db.models import Job, JobEvent
from vmdr.model.errors import VmdrError

__all__ = [
    "ACTIVE",
    "JobCancelled",
    "JobConflict",
    "JobKind",
    "JobRunner",
    "StepContext",
    "active_job",
]

log = logging.getLogger(__name__)
ACTIVE = ("queued", "running")


def active_job(s: Session, holder: str | None) -> Job | None:
    """The queued or running job holding ``holder`` (an item, plan or group id)."""
    job: Job | None = s.scalars(
        select(Job).where(Job.item_id == holder, Job.state.in_(ACTIVE))
    ).first()
    return job


class JobConflict(VmdrError):
    code = "VMDR-E0511"
    http_status = 409
    msg = "protected item {item} already has job {job} ({kind}, {state})"
    fix = "Wait for it to finish (`vmdr jobs watch {job}`) or cancel it, then retry."


class JobUnknown(VmdrError):
    code = "VMDR-E0512"
    http_status = 404
    msg = "no job {job}"
    fix = "List jobs with `vmdr jobs list`."


class JobCancelled(VmdrError):
    code = "VMDR-E0513"
    msg = "job {job} was cancelled before step {step}"


class NotCancellable(VmdrError):
    code = "VMDR-E0514"
    http_status = 409
    msg = "job {job} ({kind}) cannot be cancelled at step {step}"
    fix = "Let it finish; then undo its effect with the matching operation."


@dataclass
class StepContext:
    """What a step sees: the job's parameters and a way to report progress."""

    job_id: str
    params: dict[str, Any]
    _runner: JobRunner

    def progress(self, step: str, done_bytes: int, message: str | None = None) -> None:
        self._runner.event(self.job_id, step, "progress", done_bytes, message)

    def with_params(self, **changes: Any) -> StepContext:
        """The same job, seen with some parameters changed (for a step that
        runs another step's code with different options)."""
        return StepContext(self.job_id, {**self.params, **changes}, self._runner)


Step = Callable[[StepContext], None]


@dataclass(frozen=True)
class JobKind:
    name: str
    steps: list[tuple[str, Step]]
    # Steps before this index may be cancelled (None: any time).
    cancellable_before: int | None = None
    # Called once when the job fails or is cancelled (e.g. to put its
    # protected item back where the operation started).
    on_fail: Callable[[StepContext, dict[str, Any]], None] | None = None

    def may_cancel(self, step: int) -> bool:
        return self.cancellable_before is None or step < self.cancellable_before


@dataclass
class JobRunner:
    sessions: sessionmaker[Session]
    kinds: dict[str, JobKind] = field(default_factory=dict)

    def register(self, kind: JobKind) -> None:
        self.kinds[kind.name] = kind

    # -- creating and cancelling ---------------------------------------------
    def submit(self, kind: str, params: dict[str, Any], item_id: str | None = None) -> str:
        if kind not in self.kinds:
            raise VmdrError(detail=f"unknown job kind {kind!r}")
        try:
            with self.sessions.begin() as s:
                job = Job(kind=kind, params=params, item_id=item_id, state="queued")
                s.add(job)
                s.flush()
                return job.id
        except IntegrityError:
            with self.sessions() as s:
                other = active_job(s, item_id)
            if other is None:  # it finished meanwhile: try once more
                return self.submit(kind, params, item_id)
            raise JobConflict(
                item=item_id, job=other.id, kind=other.kind, state=other.state
            ) from None

    def cancel(self, job_id: str) -> None:
        with self.sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise JobUnknown(job=job_id)
            if job.state not in ACTIVE:
                return
            if not self.kinds[job.kind].may_cancel(job.step):
                raise NotCancellable(job=job_id, kind=job.kind, step=job.step)
            job.cancel_requested = True

    def event(
        self, job_id: str, step: str, kind: str, done_bytes: int = 0, message: str | None = None
    ) -> None:
        with self.sessions.begin() as s:
            s.add(JobEvent(job_id=job_id, step=step, kind=kind, bytes=done_bytes, message=message))

    # -- running ----------------------------------------------------------------
    def run(self, job_id: str) -> str:
        """Run (or resume) a job to its end; returns its final state."""
        with self.sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise JobUnknown(job=job_id)
            if job.state not in ACTIVE:
                return job.state
            job.state = "running"
            kind, params = self.kinds[job.kind], dict(job.params)
        ctx = StepContext(job_id, params, self)
        while True:
            with self.sessions() as s:
                job = s.get(Job, job_id)
                assert job is not None
                index, cancel = job.step, job.cancel_requested
            if index >= len(kind.steps):
                return self._finish(job_id, "succeeded", None)
            name, fn = kind.steps[index]
            if cancel and kind.may_cancel(index):
                self.event(job_id, name, "cancelled")
                self._undo(kind, ctx, {"code": JobCancelled.code, "message": "cancelled"})
                return self._finish(job_id, "cancelled", None)
            self.event(job_id, name, "start")
            try:
                fn(ctx)
            except Exception as exc:
                error = exc.to_dict() if isinstance(exc, VmdrError) else {
                    "code": "VMDR-E0500", "message": repr(exc), "fix": ""
                }  # fmt: skip
                log.warning("job %s step %s failed: %s", job_id, name, error["message"])
                log.debug("%s", traceback.format_exc())
                self.event(job_id, name, "error", message=error["message"])
                self._undo(kind, ctx, error)
                return self._finish(job_id, "failed", error)
            with self.sessions.begin() as s:
                job = s.get(Job, job_id)
                assert job is not None
                s.add(JobEvent(job_id=job_id, step=name, kind="end"))
                job.step = index + 1

    def _undo(self, kind: JobKind, ctx: StepContext, error: dict[str, Any]) -> None:
        if kind.on_fail is None:
            return
        try:
            kind.on_fail(ctx, error)
        except Exception:  # the job's own error is the one to report
            log.exception("job %s: on_fail of %s failed", ctx.job_id, kind.name)

    def _finish(self, job_id: str, state: str, error: dict[str, Any] | None) -> str:
        with self.sessions.begin() as s:
            job = s.get(Job, job_id)
            assert job is not None
            job.state, job.error = state, error
        return state

    def resume_all(self) -> list[str]:
        """Jobs a previous run left queued or running, run again in order."""
        with self.sessions() as s:
            ids = list(
                s.scalars(select(Job.id).where(Job.state.in_(ACTIVE)).order_by(Job.created_at))
            )
        return [self.run(i) for i in ids]

    def launch(self, kind: str, params: dict[str, Any], item_id: str | None = None) -> str:
        """Submit a job and run it in a thread of its own; its id."""
        job_id = self.submit(kind, params, item_id)
        self.start_in_thread(job_id)
        return job_id

    def start_in_thread(self, job_id: str) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(job_id,), name=f"job-{job_id[:8]}")
        thread.start()
        return thread
