"""What the dashboard's overview and the item lists show, in a constant
number of queries whatever the number of items.

    GET /v1/overview   counts only: items by state, health, worst RPO,
                       running jobs (the newest 50), failed jobs of 24 h

RPO and health come from ``rpo.RpoView``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vmdr.control.api.jobs import job_dict
from vmdr.control.db.models import Job, Machine, ProtectedItem
from vmdr.control.jobs import ACTIVE, JobState
from vmdr.control.rpo import RpoView
from vmdr.control.workflows.context import Workflows
from vmdr.model.health import replication_health
from vmdr.model.lifecycle import State

__all__ = ["add_overview_routes", "overview"]

RUNNING_SHOWN = 50


def overview(s: Session, wf: Workflows) -> dict[str, Any]:
    view = RpoView.load(s, wf)
    failing = ProtectedItem.settings["replication_error"].as_string()
    rows = s.execute(
        select(ProtectedItem.id, ProtectedItem.state, ProtectedItem.direction, failing)
    ).all()
    states: Counter[str] = Counter()
    health: Counter[str] = Counter()
    rpos = []
    for item, state, direction, error in rows:
        states[state] += 1
        rpo = view.rpo(item, state, direction)
        if state == State.PROTECTED:
            health[replication_health(rpo, view.threshold, error not in (None, "null"))] += 1
        if rpo is not None:
            rpos.append(rpo)
    running = list(
        s.scalars(
            select(Job)
            .where(Job.state.in_(ACTIVE))
            .order_by(Job.created_at.desc())
            .limit(RUNNING_SHOWN)
        )
    )
    holders = [j.item_id for j in running if j.item_id]
    vms = dict(
        s.execute(
            select(ProtectedItem.id, Machine.name)
            .join(Machine, Machine.id == ProtectedItem.machine_id)
            .where(ProtectedItem.id.in_(holders))
        ).all()
    )
    day_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    by_state = select(Job.state, func.count()).where(Job.state.in_(ACTIVE)).group_by(Job.state)
    counts: dict[str, int] = {state: n for state, n in s.execute(by_state).all()}
    failed = s.scalar(
        select(func.count()).where(Job.updated_at >= day_ago, Job.state == JobState.FAILED)
    )
    return {
        "items": len(rows),
        "states": dict(states),
        "health": {k: health.get(k, 0) for k in ("Normal", "Warning", "Critical")},
        "worst_rpo_seconds": max(rpos) if rpos else None,
        "running_jobs": sum(counts.get(s, 0) for s in ACTIVE),
        "failed_jobs_24h": failed or 0,
        "jobs": [{**job_dict(j), "vm": vms.get(j.item_id or "")} for j in reversed(running)],
    }


def add_overview_routes(app: FastAPI, wf: Workflows) -> None:
    @app.get("/v1/overview")
    def get_overview() -> dict[str, Any]:
        """Counts for the dashboard's first page (a constant number of queries)."""
        with wf.sessions() as s:
            return overview(s, wf)
