"""Replication groups over HTTP (what a group is and how its points are cut:
``control/workflows/groups.py``).

    POST   /v1/replication-groups              {name, items, quiesce?}
    GET    /v1/replication-groups[/{id|name}]  with the complete group points
    DELETE /v1/replication-groups/{id|name}
    POST   /v1/replication-groups/{g}/points   202: cut a group point now
    POST   /v1/replication-groups/{g}/{unplannedFailover|testFailover}
           {group_point?}: every member from the same group point (the
           newest every member has, or the one named); 202 with the jobs
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vmdr.control.api.common import job_accepted
from vmdr.control.db.models import RecoveryPoint, ReplicationGroup
from vmdr.control.jobs import JobConflict
from vmdr.control.jobs.store import active_job
from vmdr.control.workflows.context import Workflows, group_of, to_state
from vmdr.control.workflows.groups import (
    ITEM,
    NAME,
    GroupExists,
    GroupRefused,
    Quiesce,
    check_ready,
    common_point,
    complete_points,
    find_group,
)
from vmdr.control.workflows.operations import find_item, start_operation
from vmdr.model import lifecycle
from vmdr.model.lifecycle import Operation


class NewGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    items: list[Annotated[str, Field(pattern=ITEM)]] = Field(min_length=2, max_length=50)
    quiesce: Quiesce | None = None


class GroupFailover(BaseModel):
    model_config = ConfigDict(extra="forbid")
    group_point: int | None = Field(default=None, ge=1)


# -- the API ------------------------------------------------------------------------------
def _group_dict(wf: Workflows, s: Session, group: ReplicationGroup) -> dict[str, Any]:
    vms = {item: wf.item(s, item)[1].name for item in group.items}
    points = [
        {
            "group_point": g,
            "time": p["time"],
            "points": {vms[i]: seq for i, seq in p["items"].items()},
        }
        for g, p in complete_points(s, group).items()
    ]
    return {
        "id": group.id,
        "name": group.name,
        "items": group.items,
        "vms": list(vms.values()),
        "quiesce": group.quiesce,
        "points": points,
    }


def add_group_routes(app: FastAPI, wf: Workflows) -> None:
    @app.post("/v1/replication-groups", status_code=201)
    def post_group(body: NewGroup) -> dict[str, Any]:
        with wf.sessions() as s:
            ids = [find_item(wf, s, name)[0].id for name in body.items]
            if len(set(ids)) != len(ids):
                raise GroupExists(detail="an item is named twice in the group")
            for item in ids:
                other = group_of(s, item)
                if other is not None:
                    raise GroupExists(detail=f"{item} is already in replication group {other.name}")
        try:
            with wf.sessions.begin() as s:
                quiesce = body.quiesce.model_dump() if body.quiesce else None
                group = ReplicationGroup(name=body.name, items=ids, quiesce=quiesce,
                                         cycle_anchor=0.0)  # fmt: skip
                s.add(group)
                s.flush()
                return _group_dict(wf, s, group)
        except IntegrityError:
            raise GroupExists(detail=f"a replication group named {body.name!r} exists") from None

    @app.get("/v1/replication-groups")
    def get_groups() -> list[dict[str, Any]]:
        with wf.sessions() as s:
            groups = s.scalars(select(ReplicationGroup).order_by(ReplicationGroup.name))
            return [_group_dict(wf, s, g) for g in groups]

    @app.get("/v1/replication-groups/{ident}")
    def get_group(ident: str) -> dict[str, Any]:
        with wf.sessions() as s:
            return _group_dict(wf, s, find_group(s, ident))

    @app.delete("/v1/replication-groups/{ident}")
    def delete_group(ident: str) -> dict[str, Any]:
        """The members go back to per-item points. The group's points stay,
        as continuous points of each member, pruned with the others."""
        with wf.sessions.begin() as s:
            group = find_group(s, ident)
            name = group.name
            cutting = active_job(s, group.id)
            if cutting is not None:
                raise GroupRefused(
                    group=name,
                    detail=f"a group point is being cut now (job {cutting.id})",
                    fix="Retry when it has finished (`vmdr jobs watch JOB`).",
                )
            for row in s.scalars(select(RecoveryPoint).where(RecoveryPoint.group_id == group.id)):
                row.tag = "continuous"
            s.delete(group)
        return {"deleted": name}

    @app.post("/v1/replication-groups/{ident}/points", status_code=202)
    def post_point(ident: str) -> JSONResponse:
        with wf.sessions() as s:
            group = find_group(s, ident)
            s.expunge(group)
        check_ready(wf, group)
        try:
            job = wf.engine.submit("groupPoint", {"group": group.id}, group.id)
        except JobConflict as exc:  # the replicator's cycle, or another request's
            raise GroupRefused(
                group=group.name,
                detail=f"a group point is being cut now ({exc.message})",
                fix="Wait for it to finish; it is as good as the one asked for.",
            ) from exc
        return job_accepted(job, group=group.name, kind="groupPoint")

    @app.post("/v1/replication-groups/{ident}/{operation}", status_code=202)
    def post_failover(
        ident: str,
        operation: Literal["unplannedFailover", "testFailover"],
        body: GroupFailover,
    ) -> JSONResponse:
        """Every member to the same group point, each in its own job."""
        op = Operation(operation)
        with wf.sessions() as s:
            group = find_group(s, ident)
            gseq, seqs = common_point(s, group, body.group_point)
            refused = []
            for item in group.items:
                row, machine = wf.item(s, item)
                if op not in lifecycle.allowed(to_state(row, machine.name)):
                    refused.append(f"{machine.name} is {row.state}")
            name = group.name
        if refused:  # all members or none
            raise GroupRefused(
                group=name,
                detail=f"{operation} is not allowed: " + "; ".join(refused),
                fix="Every member must allow the operation (`vmdr items list`).",
            )
        jobs = []
        for item, seq in seqs.items():
            job_id, kind = start_operation(wf, item, op, {"recovery_point": seq})
            jobs.append({"item": item, "recovery_point": seq, "job": job_id, "kind": kind})
        body_out = {"group": name, "group_point": gseq, "jobs": jobs}
        return JSONResponse(body_out, status_code=202)
