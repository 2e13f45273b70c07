"""The workflow steps' fixtures: the real database (a SQLite file) and the
outside world in memory (``outside.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vmdr.control.db.engine import open_database, session_factory
from vmdr.control.secrets import SecretBox
from vmdr.control.workflows.context import Workflows

from .outside import MemoryPlane, MemoryVms


@pytest.fixture
def plane() -> MemoryPlane:
    return MemoryPlane()


@pytest.fixture
def vms() -> MemoryVms:
    return MemoryVms("web-01", "mt-01")


@pytest.fixture
def wf(tmp_path: Path, plane: MemoryPlane, vms: MemoryVms) -> Iterator[Workflows]:
    engine = open_database(f"sqlite:///{tmp_path / 'vmdr.db'}")
    box = SecretBox.in_folder(tmp_path)
    flows = Workflows(session_factory(engine), None, lambda: box, tmp_path,  # type: ignore[arg-type]
                      load_plane=lambda _: plane, vcenters=vms)  # fmt: skip
    yield flows
    engine.dispose()
