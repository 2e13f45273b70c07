"""The parameters of each job kind, as models: checked when a job is
submitted (a wrong shape is refused with VMDR-E0522 before anything is
queued), stored as plain JSON, read back typed by the steps
(``ctx.args(OperationParams)``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vmdr.model.errors import VmdrError, validation_summary

__all__ = [
    "BadJobParams",
    "DiscoverParams",
    "GroupPointParams",
    "ItemParams",
    "JobParams",
    "OperationParams",
    "PlanParams",
    "PointParams",
    "RecoveryOptions",
    "TransferPlanParams",
    "checked",
]


class BadJobParams(VmdrError):
    code = "VMDR-E0522"
    http_status = 422
    msg = "parameters of a {kind} job refused: {detail}"
    fix = "Send the parameters the operation documents (GET /openapi.json)."


class JobParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Set by the engine and by retry, for any kind.
    retry_of: str | None = None
    partition: str | None = None


class DiscoverParams(JobParams):
    vcenter: str


class ItemParams(JobParams):
    item: str


class PointParams(ItemParams):
    tag: str | None = None


class RecoveryOptions(ItemParams):
    """What a user may choose for an operation (and for its transfer plan)."""

    recovery_point: int | None = Field(default=None, ge=1)
    mode: Literal["auto", "olr", "alr"] = "auto"
    datastore: str | None = None
    remove_snapshots: bool = False
    force: bool = False


class OperationParams(RecoveryOptions):
    """An operation on a protected item: the options, and what a plan or a
    group adds."""

    operation: str
    skip_cutover: bool = False  # a plan moves DNS once, with its own step
    initial: Literal["diff", "full"] | None = None  # a step re-running another's code


class TransferPlanParams(RecoveryOptions):
    pass


class GroupPointParams(JobParams):
    group: str


class PlanParams(JobParams):
    plan: str
    operation: str
    options: dict[str, Any] = {}
    done: list[str] = []  # the units finished, for resume
    group_points: dict[str, int] = {}  # the group point each group uses


def checked(kind: str, model: type[BaseModel], params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as ``model`` accepts them (defaults left out), or refused."""
    try:
        fitted = model.model_validate(params)
    except ValidationError as exc:
        raise BadJobParams(kind=kind, detail=validation_summary(exc.errors())) from None
    return fitted.model_dump(mode="json", exclude_defaults=True)
