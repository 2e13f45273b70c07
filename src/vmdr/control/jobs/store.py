"""The public record of jobs: one ``jobs`` row per job (kind, holder, state,
the index of the next step, parameters, error) and its ``job_events``.

The engine (DBOS) keeps its own checkpoints; these rows are what the API,
the CLI and the dashboard read, and the lock: a partial unique index lets a
protected item, group or plan hold at most one queued or running job, across
every API replica and worker, because the database says so.

Writes here retry while the database is unreachable (a restart, a fail-over
of PostgreSQL) for up to ``OUTAGE`` seconds, so a job does not fail half-way
because its bookkeeping could not be written; a step's own work is not
retried here.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from vmdr.control.db.models import Job, JobEvent
from vmdr.control.jobs.kinds import ACTIVE, JobState, JobUnknown

__all__ = ["OUTAGE", "JobStore", "active_job", "retrying"]

log = logging.getLogger(__name__)
OUTAGE = 600.0
T = TypeVar("T")


def transient(exc: BaseException) -> bool:
    """A database error that a later attempt may not meet (connection lost,
    server restarting, SQLite busy), as opposed to a constraint or a bug."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def retrying(fn: Callable[[], T], what: str, outage: float = OUTAGE) -> T:
    """``fn()``, again after a transient database error, until ``outage``."""
    deadline, pause = time.monotonic() + outage, 0.2
    while True:
        try:
            return fn()
        except DBAPIError as exc:
            if not transient(exc) or time.monotonic() > deadline:
                raise
            log.warning("%s: database unavailable (%s); retrying", what, str(exc).splitlines()[0])
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def active_job(s: Session, holder: str | None) -> Job | None:
    """The queued or running job holding ``holder`` (an item, plan or group id)."""
    job: Job | None = s.scalars(
        select(Job).where(Job.item_id == holder, Job.state.in_(ACTIVE))
    ).first()
    return job


class JobStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    # -- rows --------------------------------------------------------------------------
    def get(self, s: Session, job_id: str) -> Job:
        job = s.get(Job, job_id)
        if job is None:
            raise JobUnknown(job=job_id)
        return job

    def begin(self, job_id: str) -> dict[str, Any] | None:
        """The job starts (or resumes) running: its kind, parameters and the
        next step; None if it is over already (e.g. cancelled while queued
        by an earlier run of this very call)."""

        def run() -> dict[str, Any] | None:
            with self.sessions.begin() as s:
                job = s.get(Job, job_id)
                if job is None or job.state not in ACTIVE:
                    return None
                job.state = JobState.RUNNING
                return {"kind": job.kind, "params": dict(job.params), "step": job.step}

        return retrying(run, f"job {job_id}: begin")

    def end_step(self, job_id: str, name: str, index: int | None) -> None:
        """Step ``name`` is done: an ``end`` event and, for a step of a list,
        the index of the next one, in one transaction."""

        def run() -> None:
            with self.sessions.begin() as s:
                s.add(JobEvent(job_id=job_id, step=name, kind="end"))
                values: dict[str, Any] = {"updated_at": dt.datetime.now(dt.UTC)}
                if index is not None:
                    values["step"] = index + 1
                s.execute(update(Job).where(Job.id == job_id).values(**values))

        retrying(run, f"job {job_id}: end of {name}")

    def finish(
        self, job_id: str, state: str, error: dict[str, Any] | None, *, only_active: bool = False
    ) -> Any:
        """The job ends in ``state`` (if it is still active). Returns the
        state, or with ``only_active`` whether this call ended it."""
        ended = retrying(
            lambda: self.finish_if(job_id, ACTIVE, state, error), f"job {job_id}: finish"
        )
        return ended if only_active else state

    def finish_if(
        self, job_id: str, current: tuple[str, ...], state: str, error: dict[str, Any] | None
    ) -> bool:
        """The job ends in ``state`` if its state is one of ``current``
        (one conditional UPDATE: of two racing callers, one wins)."""
        with self.sessions.begin() as s:
            done = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.state.in_(current))
                .values(state=state, error=error, updated_at=dt.datetime.now(dt.UTC))
            )
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def cancel_requested(self, job_ids: list[str]) -> set[str]:
        if not job_ids:
            return set()

        def run() -> set[str]:
            with self.sessions() as s:
                query = select(Job.id).where(Job.id.in_(job_ids), Job.cancel_requested)
                return set(s.scalars(query))

        return retrying(run, "cancel requests")

    def update_params(self, job_id: str, **changes: Any) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            with self.sessions.begin() as s:
                job = self.get(s, job_id)
                job.params = {**job.params, **changes}
                return dict(job.params)

        return retrying(run, f"job {job_id}: parameters")

    # -- events ------------------------------------------------------------------------
    def event(
        self, job_id: str, step: str, kind: str, done_bytes: int = 0, message: str | None = None
    ) -> None:
        def run() -> None:
            with self.sessions.begin() as s:
                s.add(JobEvent(job_id=job_id, step=step, kind=kind, bytes=done_bytes,
                               message=message))  # fmt: skip

        retrying(run, f"job {job_id}: event")

    def progress(self, job_id: str, step: str, done_bytes: int, message: str | None) -> None:
        self.event(job_id, step, "progress", done_bytes, message)

    def events_after(self, s: Session, job_id: str, after: int, limit: int) -> list[JobEvent]:
        """A job's events with an id above ``after`` (the cursor), oldest first."""
        return list(
            s.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.id > after)
                .order_by(JobEvent.id)
                .limit(limit)
            )
        )

    # -- retention -----------------------------------------------------------------------
    def finished_before(self, older_than: dt.datetime, batch: int = 500) -> list[str]:
        """A batch of finished jobs last changed before ``older_than``."""
        with self.sessions() as s:
            return list(
                s.scalars(
                    select(Job.id)
                    .where(Job.state.not_in(ACTIVE), Job.updated_at < older_than)
                    .order_by(Job.updated_at)
                    .limit(batch)
                )
            )

    def delete(self, ids: list[str]) -> None:
        """Jobs and their events, gone."""
        with self.sessions.begin() as s:
            s.execute(delete(JobEvent).where(JobEvent.job_id.in_(ids)))
            s.execute(delete(Job).where(Job.id.in_(ids)))
