"""The overview and a page of items cost the same few queries for 50 items
or 500 (on SQLite and PostgreSQL), and say the same as the items do."""

from __future__ import annotations

import time

from vmdr.control.api.items import list_items
from vmdr.control.api.overview import overview
from vmdr.control.db.models import RecoveryPoint
from vmdr.control.workflows.context import Workflows

from .rows import add_items, count_statements


def add_points(wf: Workflows, items: list[str], age: float) -> None:
    with wf.sessions.begin() as s:
        for item in items:
            s.add(RecoveryPoint(item_id=item, disk_unit=0, seq=1, time=time.time() - age))


def test_overview_and_items_pages_cost_a_constant_number_of_queries(wf: Workflows) -> None:
    fresh = add_items(wf, 40, anchor=time.time())
    add_points(wf, fresh, age=60)
    stale = add_items(wf, 10, anchor=time.time())
    add_points(wf, stale, age=2000)  # beyond twice the default 900 s threshold: Critical
    seen, stop = count_statements(wf)
    with wf.sessions() as s:
        small = overview(s, wf)
        small_count = len(seen)
        seen.clear()
        page = list_items(s, wf, 1000, None)
        page_count = len(seen)
    assert small["items"] == 50 and small["states"] == {"Protected": 50}
    assert small["health"] == {"Normal": 40, "Warning": 0, "Critical": 10}
    assert 2000 <= small["worst_rpo_seconds"] < 2100
    assert len(page) == 50 and sum(i["health"] == "Critical" for i in page) == 10
    add_points(wf, add_items(wf, 450, anchor=time.time()), age=60)
    seen.clear()
    with wf.sessions() as s:
        big = overview(s, wf)
        assert len(seen) == small_count <= 10, seen
        seen.clear()
        first = list_items(s, wf, 200, None)
        assert len(seen) == page_count <= 10, seen
        second = list_items(s, wf, 200, first[-1]["vm"])
    stop()
    assert big["items"] == 500 and big["health"]["Normal"] == 490
    assert [i["vm"] for i in first + second] == sorted(i["vm"] for i in first + second)
    assert len({i["id"] for i in first + second}) == 400
