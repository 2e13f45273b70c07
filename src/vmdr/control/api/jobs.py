"""The jobs of the configuration server over HTTP.

GET  /v1/jobs[?item=&active=&limit=]   oldest first; limit keeps the newest (default 100)
GET  /v1/jobs/{id}                     a job, its steps and its newest events
GET  /v1/jobs/{id}/events?after=N      events with an id above N (the cursor), and
                                       the job's state: what ``vmdr jobs watch`` polls
POST /v1/jobs/{id}/cancel              stops at the next step, or at once where the
                                       step runs a cancellable data operation
POST /v1/jobs/{id}/retry               a failed or cancelled job, again: the same
                                       operation with the same parameters (a plan:
                                       resumed, skipping what it did); 202 + new job
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from vmdr.control.api.common import job_accepted
from vmdr.control.db.models import Job, JobEvent
from vmdr.control.jobs import ACTIVE, JobState, NotRetryable
from vmdr.control.workflows.context import Workflows
from vmdr.control.workflows.operations import start_operation
from vmdr.control.workflows.plans import cancel_waiting
from vmdr.model.lifecycle import Operation

__all__ = ["add_job_routes", "job_dict"]

EVENTS_PAGE = 500


def event_dict(e: JobEvent) -> dict[str, Any]:
    return {"id": e.id, "time": e.time, "step": e.step, "kind": e.kind, "bytes": e.bytes,
            "message": e.message}  # fmt: skip


def job_dict(j: Job, events: list[JobEvent] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": j.id, "kind": j.kind, "item": j.item_id, "state": j.state, "step": j.step,
        "error": j.error, "parent": j.parent_id, "cancel_requested": j.cancel_requested,
        "created_at": j.created_at, "updated_at": j.updated_at,
        # Clients wait on this, not on a list of state names of their own.
        "finished": j.state not in ACTIVE,
    }  # fmt: skip
    if events is not None:
        out["events"] = [event_dict(e) for e in events]
    return out


def retry(wf: Workflows, job_id: str) -> tuple[str, str]:
    """Start a failed or cancelled job again; (new job id, its kind)."""
    with wf.sessions() as s:
        job = wf.engine.store.get(s, job_id)
        kind, state, holder, params = job.kind, job.state, job.item_id, dict(job.params)
    if state not in (JobState.FAILED, JobState.CANCELLED):
        raise NotRetryable(job=job_id, kind=kind, state=state)
    params["retry_of"] = job_id
    if "operation" in params and "item" in params:  # an operation on a protected item
        item, op = params.pop("item"), Operation(params.pop("operation"))
        return start_operation(wf, item, op, params)
    return wf.engine.submit(kind, params, holder), kind


def add_job_routes(app: FastAPI, wf: Workflows) -> None:
    @app.get("/v1/jobs")
    def get_jobs(
        item: str | None = Query(default=None, max_length=36),
        parent: str | None = Query(default=None, max_length=36, description="a plan's job"),
        active: bool = False,
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        """Jobs oldest first; ``item`` / ``active`` filter; the newest ``limit``."""
        query = select(Job)
        if item is not None:
            query = query.where(Job.item_id == item)
        if parent is not None:
            query = query.where(Job.parent_id == parent)
        if active:
            query = query.where(Job.state.in_(ACTIVE))
        with wf.sessions() as s:
            newest = s.scalars(query.order_by(Job.created_at.desc()).limit(limit))
            return [job_dict(j) for j in reversed(list(newest))]

    @app.get("/v1/jobs/{ident}")
    def get_job(ident: str) -> dict[str, Any]:
        """A job with its step names and its newest events (older ones: the cursor)."""
        with wf.sessions() as s:
            job = wf.engine.store.get(s, ident)
            newest = s.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == ident)
                .order_by(JobEvent.id.desc())
                .limit(EVENTS_PAGE)
            )
            events = list(reversed(list(newest)))
            total = s.scalar(select(func.count()).where(JobEvent.job_id == ident))
            kind = wf.engine.kinds.get(job.kind)
            return {**job_dict(job, events), "events_total": total,
                    "steps": kind.step_names if kind else []}  # fmt: skip

    @app.get("/v1/jobs/{ident}/events")
    def get_events(
        ident: str,
        after: int = Query(default=0, ge=0),
        limit: int = Query(default=EVENTS_PAGE, ge=1, le=5000),
    ) -> dict[str, Any]:
        """Events after the cursor, oldest first, with the job's state and
        the next cursor: poll until ``finished`` and ``events`` empty."""
        with wf.sessions() as s:
            job = wf.engine.store.get(s, ident)
            events = wf.engine.store.events_after(s, ident, after, limit)
            return {
                "job": ident, "state": job.state, "finished": job.state not in ACTIVE,
                "error": job.error, "events": [event_dict(e) for e in events],
                "next": events[-1].id if events else after,
            }  # fmt: skip

    @app.post("/v1/jobs/{ident}/cancel", status_code=202)
    def post_cancel(ident: str) -> dict[str, Any]:
        asked = wf.engine.cancel(ident)
        if asked:
            cancel_waiting(wf, ident)
        return {"job": ident, "cancel_requested": asked}

    @app.post("/v1/jobs/{ident}/retry", status_code=202)
    def post_retry(ident: str) -> JSONResponse:
        job_id, kind = retry(wf, ident)
        return job_accepted(job_id, kind=kind, retry_of=ident)
