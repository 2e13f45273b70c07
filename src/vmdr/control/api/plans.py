"""Recovery plans over HTTP (what a plan is and how it runs:
``control/workflows/plans.py``).

    POST   /v1/recovery-plans                  {name, spec}
    GET    /v1/recovery-plans[/{id|name}]      with its last runs (done units, error,
                                               the step it waits on)
    DELETE /v1/recovery-plans/{id|name}
    POST   /v1/recovery-plans/{p}/{operation}  run it: 202 + the plan's job
    POST   /v1/recovery-plans/{p}/resume       the last failed run again, skipping what it did
    POST   /v1/recovery-plans/{p}/approve      the manual step it waits on
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from vmdr.control.api.common import job_accepted
from vmdr.control.db.models import Job, JobEvent, RecoveryPlan, by_id_or_name
from vmdr.control.workflows.context import Workflows
from vmdr.control.workflows.operations import find_item
from vmdr.control.workflows.plans import (
    APPROVED,
    NAME,
    PlanError,
    PlanExists,
    PlanNotFound,
    PlanOperation,
    PlanSpec,
    waiting,
    waiting_event,
)

__all__ = ["add_plan_routes"]


class NewPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    spec: PlanSpec


class PlanRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    remove_snapshots: bool = False
    force: bool = False


def _plan_dict(plan: RecoveryPlan) -> dict[str, Any]:
    return {"id": plan.id, "name": plan.name, "spec": plan.spec}


def add_plan_routes(app: FastAPI, wf: Workflows) -> None:
    def find(s: Any, ident: str) -> RecoveryPlan:
        plan = by_id_or_name(s, RecoveryPlan, ident)
        if plan is None:
            raise PlanNotFound(plan=ident)
        return plan

    @app.post("/v1/recovery-plans", status_code=201)
    def post_plan(body: NewPlan) -> dict[str, Any]:
        with wf.sessions() as s:
            for group in body.spec.groups:
                for item in group.items:
                    find_item(wf, s, item)  # every item must be protected
        try:
            with wf.sessions.begin() as s:
                plan = RecoveryPlan(name=body.name, spec=body.spec.model_dump())
                s.add(plan)
                s.flush()
                return _plan_dict(plan)
        except IntegrityError:
            raise PlanExists(plan=body.name) from None

    @app.get("/v1/recovery-plans")
    def get_plans() -> list[dict[str, Any]]:
        with wf.sessions() as s:
            return [
                _plan_dict(p) for p in s.scalars(select(RecoveryPlan).order_by(RecoveryPlan.name))
            ]

    @app.get("/v1/recovery-plans/{ident}")
    def get_plan(ident: str) -> dict[str, Any]:
        with wf.sessions() as s:
            plan = find(s, ident)
            jobs = s.scalars(
                select(Job).where(Job.item_id == plan.id).order_by(Job.created_at.desc()).limit(10)
            ).all()
            return {
                **_plan_dict(plan),
                "runs": [
                    {
                        "job": j.id,
                        "operation": j.params.get("operation"),
                        "state": j.state,
                        "done": j.params.get("done", []),
                        "error": j.error,
                        "waiting": waiting(s, j.id) if j.state == "running" else None,
                    }
                    for j in jobs
                ],
            }

    @app.delete("/v1/recovery-plans/{ident}")
    def delete_plan(ident: str) -> dict[str, Any]:
        with wf.sessions.begin() as s:
            s.delete(find(s, ident))
        return {"deleted": ident}

    def start(plan_id: str, params: dict[str, Any]) -> JSONResponse:
        return job_accepted(wf.engine.submit("recoveryPlan", params, plan_id), plan=plan_id)

    @app.post("/v1/recovery-plans/{ident}/resume", status_code=202)
    def post_resume(ident: str) -> JSONResponse:
        """Run the last failed or cancelled run again, skipping what it did."""
        with wf.sessions() as s:
            plan = find(s, ident)
            last = s.scalars(
                select(Job).where(Job.item_id == plan.id).order_by(Job.created_at.desc())
            ).first()
            if last is None or last.state not in ("failed", "cancelled"):
                raise PlanError(plan=plan.name, detail="no failed run to resume")
            params, plan_id = dict(last.params), plan.id
        return start(plan_id, params)

    @app.post("/v1/recovery-plans/{ident}/approve")
    def post_approve(ident: str) -> dict[str, Any]:
        """Approve the manual step the running plan waits on."""
        with wf.sessions.begin() as s:
            plan = find(s, ident)
            job = s.scalars(
                select(Job).where(Job.item_id == plan.id, Job.state == "running")
            ).first()
            event = waiting_event(s, job.id) if job is not None else None
            if job is None or event is None or waiting(s, job.id) is None:
                raise PlanError(plan=plan.name, detail="no step is waiting for approval")
            s.add(
                JobEvent(
                    job_id=job.id, step=event.step, kind="approved", bytes=0, message="approved"
                )
            )
            answer = {"plan": plan.name, "job": job.id, "approved": event.step}
        wf.engine.send(answer["job"], answer["approved"], APPROVED)
        return answer

    @app.post("/v1/recovery-plans/{ident}/{operation}", status_code=202)
    def post_run(ident: str, operation: PlanOperation, body: PlanRun) -> JSONResponse:
        """Run an operation on every item of the plan, group by group."""
        with wf.sessions() as s:
            plan_id = find(s, ident).id
        params = {"plan": plan_id, "operation": operation, "options": body.model_dump(), "done": []}
        return start(plan_id, params)
