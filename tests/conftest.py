"""Fixtures shared by every test layer.

Functional and end-to-end tests talk to real components only: the lab's vCenter
simulator, Azurite and BIND are started once per test session by ``lab`` and
stopped (by pid) when the session ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmdr.lab.lab import Lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A running, populated lab for the whole test session."""
    lab = Lab(tmp_path_factory.mktemp("lab"))
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="session")
def lab_inventory(lab: Lab) -> dict:  # type: ignore[type-arg]
    from vmdr.lab.state import load_inventory

    return load_inventory(lab.directory)


@pytest.fixture(scope="session")
def account(lab: Lab) -> Iterator[str]:
    """The lab's storage account, with VMDR_STORAGE_ACCOUNTS pointing at its key."""
    from vmdr.lab.services import STORAGE_ACCOUNTS_FILE

    old = os.environ.get("VMDR_STORAGE_ACCOUNTS")
    os.environ["VMDR_STORAGE_ACCOUNTS"] = str(lab.directory / STORAGE_ACCOUNTS_FILE)
    yield lab.credentials()["azurite"]["account"]
    if old is None:
        del os.environ["VMDR_STORAGE_ACCOUNTS"]
    else:
        os.environ["VMDR_STORAGE_ACCOUNTS"] = old


@pytest.fixture
def artifacts_dir() -> Path:
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
