"""Fixtures of the control plane's functional tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vmdr.control.db.engine import open_database, session_factory
from vmdr.control.jobs.engine import Engine
from vmdr.control.server import job_kinds
from vmdr.control.workflows.context import Workflows

from .rows import INTERVAL, interval


@pytest.fixture
def wf(database_url: str, tmp_path: Path) -> Iterator[Workflows]:
    sessions = session_factory(open_database(database_url))
    engine = Engine(sessions, database_url)
    engine.prepare_schema()
    flow = Workflows(sessions, engine, lambda: None, tmp_path)  # type: ignore[arg-type,return-value]
    for kind in job_kinds(flow):
        engine.register(kind)
    interval(tmp_path, INTERVAL)
    yield flow
    engine.bind.dispose()
