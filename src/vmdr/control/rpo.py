"""RPO and replication health of protected items, for every item of a list
in two queries: to the cloud, the age of the item's newest recovery point
(one grouped query); back home, the process server's lag for the item's
replications (its last heartbeat, one row)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vmdr.control.db.models import ProcessServer, ProtectedItem, RecoveryPoint
from vmdr.control.workflows.context import Workflows
from vmdr.model.health import DEFAULT_RPO_THRESHOLD, replication_health
from vmdr.model.ids import ReplicationId
from vmdr.model.lifecycle import Direction, State

__all__ = ["RpoView"]


@dataclass
class RpoView:
    threshold: float
    ps_health: dict[str, Any]
    newest: dict[str, float]  # item id -> time of its newest recovery point
    now: float

    @classmethod
    def load(cls, s: Session, wf: Workflows, items: list[str] | None = None) -> RpoView:
        """Two queries: the process server's heartbeat and the newest point
        of every item (or of ``items``)."""
        ps = s.scalars(select(ProcessServer)).first()
        query = select(RecoveryPoint.item_id, func.max(RecoveryPoint.time)).group_by(
            RecoveryPoint.item_id
        )
        if items is not None:
            query = query.where(RecoveryPoint.item_id.in_(items))
        newest = {item: float(t) for item, t in s.execute(query).all()}
        threshold = wf.dataplane.rpo_threshold or DEFAULT_RPO_THRESHOLD
        return cls(threshold, (ps.health or {}) if ps else {}, newest, time.time())

    def rpo(self, item: str, state: str, direction: str) -> float | None:
        """Seconds since the newest recovery point of the current direction."""
        if state != State.PROTECTED:
            return None
        if direction == Direction.PRIMARY_TO_RECOVERY:
            newest = self.newest.get(item)
            return round(self.now - newest, 1) if newest else None
        lags = [
            r.get("lag_seconds")
            for r in self.ps_health.get("replications") or []
            if (ident := ReplicationId.parse(str(r.get("id", "")))) and ident.item == item
        ]
        return max(lags) if lags and None not in lags else None

    def of(self, row: ProtectedItem) -> dict[str, Any]:
        error = (row.settings or {}).get("replication_error")
        if row.state != State.PROTECTED:
            return {"rpo_seconds": None, "health": None, "replication_error": error}
        rpo = self.rpo(row.id, row.state, row.direction)
        return {
            "rpo_seconds": rpo,
            "health": replication_health(rpo, self.threshold, error is not None),
            "replication_error": error,
        }
