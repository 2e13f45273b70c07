"""Fixtures for the Azure provider's tests against the lab's Azurite (HTTPS,
the lab's own key): the storage account name, with VMDR_STORAGE_ACCOUNTS
pointing at the lab's accounts file, and fresh blob URLs deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from vmdr.providers.azure import fencing, pageblob


@pytest.fixture
def blob_url(account: str) -> Iterator[Callable[[], str]]:
    """Makes unique pageblob:// URLs; the blobs are deleted (leases broken) after
    the test, so Azurite's folder does not grow with every run."""
    made: list[str] = []

    def make() -> str:
        url = f"pageblob://{account}/tests/{uuid.uuid4().hex}"
        made.append(url)
        return url

    yield make
    for url in made:
        if pageblob.exists(url):
            fencing.break_(url)
            pageblob.delete(url)
