"""Rows for the control plane's tests: items made directly in the database
(no vCenter needed), and a counter of the SQL statements a call makes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import event

from vmdr.control.db.models import Machine, ProtectedItem
from vmdr.control.workflows.context import Workflows
from vmdr.model.lifecycle import Direction, Site, State

INTERVAL = 300.0


def interval(state: Path, seconds: float) -> None:
    (state / "dataplane.json").write_text(json.dumps({"replication_interval": seconds}))


def add_items(wf: Workflows, count: int, anchor: float | None) -> list[str]:
    ids = []
    with wf.sessions.begin() as s:
        for i in range(count):
            machine = Machine(name=f"vm-{i:04d}")
            s.add(machine)
            s.flush()
            row = ProtectedItem(machine_id=machine.id, state=State.PROTECTED,
                                active_site=Site.PRIMARY, direction=Direction.PRIMARY_TO_RECOVERY,
                                settings={}, cycle_anchor=anchor)  # fmt: skip
            s.add(row)
            s.flush()
            ids.append(row.id)
    return ids


def count_statements(wf: Workflows) -> Any:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(wf.engine.bind, "before_cursor_execute", record)
    return seen, lambda: event.remove(wf.engine.bind, "before_cursor_execute", record)
