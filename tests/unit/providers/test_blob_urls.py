"""pageblob:// URLs: parts, parameters, and the lease kept out of messages."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import StorageErrorCode

from vmdr.blocks import BadURL
from vmdr.providers.azure.blobs import error_code, is_lease_refusal, parse_url


def test_parts_and_parameters() -> None:
    url = parse_url("pageblob://acct/replicas/web-01-disk0?lease=L1&snapshot=2026-01-01T00:00:00Z")
    assert (url.account, url.container, url.blob) == ("acct", "replicas", "web-01-disk0")
    assert url.lease == "L1" and url.snapshot == "2026-01-01T00:00:00Z"
    assert "L1" not in url.plain and "snapshot=" in url.plain
    assert parse_url(url.url) == url
    assert (
        parse_url("pageblob://acct/c/b").with_params(lease="x").url == "pageblob://acct/c/b?lease=x"
    )


@pytest.mark.parametrize(
    "bad",
    [
        "pageblob://acct/only-container",
        "pageblob://acct/c/b/extra",
        "pageblob:///c/b",
        "file:///c/b",
        "pageblob://acct/c/b?lease=",
        "pageblob://acct/c/b?size=10",
    ],
)
def test_bad_urls(bad: str) -> None:
    with pytest.raises(BadURL):
        parse_url(bad)


def test_lease_refusals_are_recognised_by_their_service_code() -> None:
    exc = HttpResponseError(message="refused")
    exc.error_code = StorageErrorCode.LEASE_ID_MISSING  # type: ignore[attr-defined]  # an enum
    assert error_code(exc) == "LeaseIdMissing" and is_lease_refusal(exc)
    exc.error_code = "LeaseIdMismatchWithBlobOperation"  # type: ignore[attr-defined]
    assert is_lease_refusal(exc)
    exc.error_code = "ServerBusy"  # type: ignore[attr-defined]
    assert not is_lease_refusal(exc)
