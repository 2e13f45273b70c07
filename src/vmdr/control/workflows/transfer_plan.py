"""The transfer plan before reprotect (``vmdr reprotect VM --plan``): per
disk, original or alternate location, the bytes that will cross, and how long
that takes at the process server's configured bandwidth — computed, not
guessed: for OLR both sides are hashed block by block and only differing
blocks count (``blocks.hashing.resync_bytes``, property-tested to equal what
the resync then writes); for ALR the cloud disk's data blocks (holes do not
travel). A read-only job: it changes neither the item nor any disk.
"""

from __future__ import annotations

from typing import Any

from vmdr.blocks.hashing import resync_bytes
from vmdr.blocks.urls import open_backend
from vmdr.control.jobs import JobKind, StepContext
from vmdr.control.jobs.params import TransferPlanParams
from vmdr.control.workflows.context import Workflows
from vmdr.model.lifecycle import Direction

__all__ = ["plan_kind"]

REFERENCE_RATE = 125_000_000  # 1 Gbit/s, for a figure when no limit is configured


def _plan(wf: Workflows, ctx: StepContext) -> None:
    from vmdr.control.workflows.to_onprem import prechecks_report

    item = ctx.params["item"]
    settings = wf.settings(item)
    with wf.sessions() as s:
        row, _ = wf.item(s, item)
        direction = Direction(row.direction)
    plane = wf.dataplane
    disks: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    if direction is Direction.PRIMARY_TO_RECOVERY:  # back to on-premises
        report = prechecks_report(wf, ctx)
        mode, findings = report["mode"], report["findings"]
        targets = report.get("targets") or {}
        for disk in settings.disks:
            original = targets.get(f"disk{disk.unit}") if mode == "OLR" else None
            with open_backend(disk.blob) as cloud:
                if original:
                    with open_backend(plane.source_disk(original).url) as onprem:
                        moving = resync_bytes(cloud, onprem)
                else:
                    with open_backend("memory:?size=0", "rw") as empty:
                        moving = resync_bytes(cloud, empty)
            matched = (report.get("matched_by") or {}).get(f"disk{disk.unit}")
            disks.append({"unit": disk.unit, "capacity": disk.capacity, "mode": mode,
                          "target": original or "(new disk)", "bytes": moving,
                          "matched_by": matched if original else None})  # fmt: skip
    else:  # after a failback: back to the cloud, the delta
        mode = "delta"
        for disk in settings.disks:
            with (
                open_backend(plane.source_disk(disk.file).url) as onprem,
                open_backend(disk.blob) as cloud,
            ):
                moving = resync_bytes(onprem, cloud)
            disks.append({"unit": disk.unit, "capacity": disk.capacity, "mode": mode,
                          "target": disk.blob, "bytes": moving})  # fmt: skip
    total = sum(d["bytes"] for d in disks)
    bandwidth = _bandwidth(wf)
    plan = {
        "mode": mode, "disks": disks, "bytes": total,
        "capacity": sum(d["capacity"] for d in disks), "bandwidth": bandwidth or None,
        "seconds": round(total / bandwidth, 1) if bandwidth else None,
        "seconds_at_1gbit": round(total / REFERENCE_RATE, 1), "findings": findings,
    }  # fmt: skip
    wf.update_settings(item, reprotect_plan=plan)
    ctx.progress("plan", total, f"{mode}: {total} bytes to move")


def _bandwidth(wf: Workflows) -> int:
    from sqlalchemy import select

    from vmdr.control.db.models import ProcessServer

    with wf.sessions() as s:
        ps = s.scalars(select(ProcessServer)).first()
        return int((ps.health or {}).get("bandwidth") or 0) if ps else 0


def plan_kind(wf: Workflows) -> JobKind:
    return JobKind("reprotectPlan", [("plan", lambda ctx: _plan(wf, ctx))],
                   params=TransferPlanParams)  # fmt: skip
