"""Protected items and their operations over HTTP, named as in the ASR API.

POST /v1/protected-items                      {machine}: enableProtection, 202 + job
GET  /v1/protected-items[?limit=&after=NAME]  a page of items by VM name
GET  /v1/protected-items/{id}                 state, active site, direction, allowed
                                              operations, disks, proofs, points
GET  /v1/protected-items/{id}/recovery-points
GET  /v1/protected-items/{id}/metrics[?since=EPOCH]  RPO and throughput samples
POST /v1/protected-items/{id}/recovery-points {tag}: one now, 202 + job
POST /v1/protected-items/{id}/reprotect-plan  202: a read-only job computing the
                                              transfer plan (``workflows/transfer_plan.py``)
POST /v1/protected-items/{id}/{operation}     202 + the job's URL; 409 with
                                              VMDR-E0501 when the state forbids it
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from vmdr.control.api.common import NAME, job_accepted
from vmdr.control.db.item_settings import ItemSettings
from vmdr.control.db.models import (
    Machine,
    MasterTarget,
    ProcessServer,
    ProtectedItem,
    RecoveryPoint,
)
from vmdr.control.rpo import RpoView
from vmdr.control.workflows import metrics
from vmdr.control.workflows.context import (
    Workflows,
    refuse_while_group_cuts,
    to_state,
)
from vmdr.control.workflows.operations import find_item, start_operation
from vmdr.model import lifecycle
from vmdr.model.errors import VmdrError
from vmdr.model.lifecycle import Direction, Operation, Site, State

__all__ = ["add_item_routes", "list_items"]


class MachineUnknown(VmdrError):
    code = "VMDR-E0801"
    http_status = 404
    msg = "{machine} is not in this configuration server's database"
    fix = "Discover its vCenter first (`vmdr vcenters list`, then discover)."


class NewItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    machine: str = Field(pattern=NAME, description="machine name or id")


class PointRefused(VmdrError):
    code = "VMDR-E0828"
    http_status = 409
    msg = "{item} is {state}: a recovery point is taken only while it is protected"
    fix = "Wait for the running operation to end, or reprotect the item first."


class NewPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tag: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class OperationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    recovery_point: int | None = Field(default=None, ge=1)
    mode: Literal["auto", "olr", "alr"] = "auto"
    datastore: str | None = Field(default=None, pattern=NAME)
    remove_snapshots: bool = False
    force: bool = False


SHOWN_DISK = {"unit", "file", "capacity", "blob"}


def _item(row: ProtectedItem, machine: Machine, points: int | None = None) -> dict[str, Any]:
    state = to_state(row, machine.name)
    settings = ItemSettings.of(row.settings)
    shown = settings.stored()
    out: dict[str, Any] = {
        "id": row.id,
        "machine": machine.id,
        "vm": machine.name,
        "state": row.state,
        "active_site": row.active_site,
        "direction": row.direction,
        "running": row.running,
        "last_error": row.last_error,
        "planned": row.planned,
        "allowed": [str(op) for op in lifecycle.allowed(state)],
        "disks": [d.model_dump(include=SHOWN_DISK) for d in settings.disks],
        "recovery_type": (settings.reprotect or {}).get("mode"),
        **{key: shown.get(key) for key in ("failback_proof", "reprotect_sent", "last_sync",
           "failed_over_at_point", "reprotect_plan", "test_failover")},
    }  # fmt: skip
    if points is not None:
        out["recovery_points"] = points
    return out


def _roles(s: Any, wf: Workflows) -> dict[str, str | None]:
    """Names of the registered roles the failback direction uses (those of
    the data-plane file)."""
    try:
        plane = wf.dataplane
    except VmdrError:
        return {"process_server": None, "master_target": None}
    out: dict[str, str | None] = {}
    for key, model, access in (
        ("process_server", ProcessServer, plane.process_server),
        ("master_target", MasterTarget, plane.master_target),
    ):
        row = s.scalars(select(model).where(model.url == access.url)).first() if access else None
        out[key] = row.name if row else None
    return out


def _route(row: ProtectedItem, roles: dict[str, str | None], last: float | None) -> dict[str, Any]:
    """Which roles carry the item's replication now, and its newest point.
    To the cloud, the configuration server's own jobs read the VMDKs and
    write the page blobs (``to_cloud.py``); back, the cloud process server
    sends to the on-premises master target."""
    if row.direction == Direction.PRIMARY_TO_RECOVERY:
        roles = {"process_server": "configuration-server", "master_target": None}
    return {**roles, "last_recovery_point": last}


def list_items(s: Any, wf: Workflows, limit: int, after: str | None) -> list[dict[str, Any]]:
    """A page of items by VM name: four queries, whatever the page's size."""
    query = select(ProtectedItem, Machine).join(Machine).order_by(Machine.name)
    if after is not None:
        query = query.where(Machine.name > after)
    rows = s.execute(query.limit(limit)).all()
    view = RpoView.load(s, wf, [r.id for r, _ in rows])
    roles = _roles(s, wf)
    return [
        {**_item(r, m), **view.of(r), **_route(r, roles, view.newest.get(r.id))} for r, m in rows
    ]


def add_item_routes(app: FastAPI, wf: Workflows) -> None:
    def operate(item_id: str, op: Operation, params: dict[str, Any]) -> JSONResponse:
        job_id, kind = start_operation(wf, item_id, op, params)
        return job_accepted(job_id, item=item_id, operation=str(op), kind=kind)

    @app.post("/v1/protected-items", status_code=202)
    def post_item(body: NewItem) -> JSONResponse:
        """Protect a discovered machine (enableProtection)."""
        try:
            with wf.sessions.begin() as s:
                machine = s.scalars(
                    select(Machine)
                    .where(or_(Machine.name == body.machine, Machine.id == body.machine))
                ).first()  # fmt: skip
                if machine is None:
                    raise MachineUnknown(machine=body.machine)
                machine_id = machine.id
                item_id = s.scalars(
                    select(ProtectedItem.id).where(ProtectedItem.machine_id == machine_id)
                ).first()
                if item_id is None:
                    row = ProtectedItem(
                        machine_id=machine_id,
                        state=State.UNPROTECTED,
                        active_site=Site.PRIMARY,
                        direction=Direction.PRIMARY_TO_RECOVERY,
                        settings={},
                    )
                    s.add(row)
                    s.flush()
                    item_id = row.id
        except IntegrityError:  # created meanwhile by another request
            with wf.sessions() as s:
                item_id = s.scalars(
                    select(ProtectedItem.id).where(ProtectedItem.machine_id == machine_id)
                ).one()
        return operate(item_id, Operation.ENABLE_PROTECTION, {})

    @app.get("/v1/protected-items")
    def get_items(
        limit: int = Query(default=1000, ge=1, le=1000),
        after: str | None = Query(default=None, max_length=255, description="a VM name"),
    ) -> list[dict[str, Any]]:
        """Items by VM name, ``limit`` at a time (the next page: ``after`` the
        last name), in a constant number of queries."""
        with wf.sessions() as s:
            return list_items(s, wf, limit, after)

    @app.get("/v1/protected-items/{ident}")
    def get_item(ident: str) -> dict[str, Any]:
        with wf.sessions() as s:
            row, machine = find_item(wf, s, ident)
            points, last = s.execute(
                select(
                    func.count(RecoveryPoint.seq.distinct()), func.max(RecoveryPoint.time)
                ).where(RecoveryPoint.item_id == row.id)
            ).one()
            route = _route(row, _roles(s, wf), last)
            view = RpoView.load(s, wf, [row.id])
            return {**_item(row, machine, points=points), **view.of(row), **route}

    @app.get("/v1/protected-items/{ident}/recovery-points")
    def get_points(ident: str) -> list[dict[str, Any]]:
        with wf.sessions() as s:
            row, _ = find_item(wf, s, ident)
            rows = s.scalars(
                select(RecoveryPoint)
                .where(RecoveryPoint.item_id == row.id)
                .order_by(RecoveryPoint.seq, RecoveryPoint.disk_unit)
            ).all()
        points: dict[int, dict[str, Any]] = {}
        for p in rows:
            entry = points.setdefault(
                p.seq, {"seq": p.seq, "time": p.time, "tag": p.tag, "kind": p.kind, "disks": {}}
            )
            entry["disks"][str(p.disk_unit)] = p.location
        return list(points.values())

    @app.get("/v1/protected-items/{ident}/metrics")
    def get_metrics(ident: str, since: float = Query(default=0.0, ge=0.0)) -> dict[str, Any]:
        """RPO and throughput samples (``metrics.py``), oldest first."""
        with wf.sessions() as s:
            row, _ = find_item(wf, s, ident)
            return {"item": row.id, "samples": metrics.samples(s, row.id, since)}

    @app.post("/v1/protected-items/{ident}/recovery-points", status_code=202)
    def post_point(ident: str, body: NewPoint) -> JSONResponse:
        """A recovery point now, with a tag (a job holding the item's lock)."""
        with wf.sessions() as s:
            row, machine = find_item(wf, s, ident)
            item_id, state = row.id, to_state(row, machine.name)
            refuse_while_group_cuts(s, item_id, machine.name)
        if state.running is not None or state.state not in (
            State.PROTECTED,
            State.TEST_FAILOVER_COMPLETED,
        ):
            raise PointRefused(item=machine.name, state=str(state.state))
        job_id = wf.engine.submit("recoveryPoint", {"item": item_id, "tag": body.tag}, item_id)
        return job_accepted(job_id, item=item_id, kind="recoveryPoint")

    @app.post("/v1/protected-items/{ident}/reprotect-plan", status_code=202)
    def post_plan(ident: str, body: OperationRequest) -> JSONResponse:
        """The transfer plan of the next reprotect (a read-only job)."""
        with wf.sessions() as s:
            row, _ = find_item(wf, s, ident)
            item_id = row.id
        params = {"item": item_id, **body.model_dump(exclude_defaults=True)}
        return job_accepted(
            wf.engine.submit("reprotectPlan", params), item=item_id, kind="reprotectPlan"
        )

    @app.post("/v1/protected-items/{ident}/{operation}", status_code=202)
    def post_operation(ident: str, operation: Operation, body: OperationRequest) -> JSONResponse:
        """Run an operation on the item (ASR names); 202 with the job's URL."""
        with wf.sessions() as s:
            row, _ = find_item(wf, s, ident)
            item_id = row.id
        return operate(item_id, operation, body.model_dump(exclude_defaults=True))
