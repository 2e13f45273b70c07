"""A page blob round-trips through the lab's Azurite, over HTTPS, with the lab's key."""

from __future__ import annotations

import base64
import os
import secrets

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.storage.blob import BlobServiceClient

from vmdr.lab.lab import Lab
from vmdr.lab.services import azurite_connection_string


def _client(lab: Lab, key: str | None = None) -> BlobServiceClient:
    state = lab.state()
    assert state is not None
    record = state.service("azurite")
    creds = dict(lab.credentials()["azurite"])
    if key:
        creds["key"] = key
    return BlobServiceClient.from_connection_string(
        azurite_connection_string(record, creds), connection_verify=record.details["ca"]
    )


def test_page_blob_round_trip(lab: Lab) -> None:
    with _client(lab) as service:
        _round_trip(service)


def _round_trip(service: BlobServiceClient) -> None:
    container = service.get_container_client("roundtrip")
    container.create_container()
    blob = container.get_blob_client("disk0")
    size = 16 * 1024 * 1024
    blob.create_page_blob(size=size)
    first = os.urandom(4 * 1024 * 1024)
    last = os.urandom(512)
    blob.upload_page(first, offset=0, length=len(first))
    blob.upload_page(last, offset=size - 512, length=512)
    ranges = [r for r in blob.list_page_ranges() if not r.cleared]
    assert ranges[0].start == 0 and ranges[-1].end == size - 1
    assert sum(r.end - r.start + 1 for r in ranges) == len(first) + len(last)
    data = blob.download_blob().readall()
    assert len(data) == size
    assert data[: len(first)] == first
    assert data[-512:] == last
    assert data[len(first) : -512] == bytes(size - len(first) - 512)


def test_wrong_account_key_is_refused(lab: Lab) -> None:
    wrong = base64.b64encode(secrets.token_bytes(64)).decode()
    with (
        pytest.raises((ClientAuthenticationError, HttpResponseError)) as info,
        _client(lab, key=wrong) as service,
    ):
        service.get_container_client("nope").create_container()
    assert info.value.status_code == 403
