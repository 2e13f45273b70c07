"""What every page-blob module shares: ``pageblob://`` URLs, service clients,
and turning the service's lease refusals into vmdr's fencing errors.

URL form::

    pageblob://ACCOUNT/CONTAINER/BLOB[?lease=ID][&snapshot=TIMESTAMP]

``lease`` is the fencing token a writer got from ``fencing.acquire``: it is
sent with every write, clear and resize, so a writer whose lease was broken
is refused by the service itself. ``snapshot`` opens a read-only snapshot.
The account's key never appears in a URL (``accounts.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.blob import BlobClient, BlobServiceClient

from vmdr.blocks.errors import BadURL
from vmdr.providers.azure.accounts import lookup
from vmdr.providers.azure.errors import WriteFenced

__all__ = [
    "API_VERSION",
    "LEASE_REFUSALS",
    "OWNER_KEY",
    "SINCE_KEY",
    "BlobURL",
    "blob_client",
    "error_code",
    "error_text",
    "fenced_error",
    "holder_of",
    "is_lease_refusal",
    "parse_url",
    "service_client",
]

# Pinned: the SDK's newest x-ms-version is newer than Azurite's (docs/emulators.md).
API_VERSION = "2025-11-05"

# Blob metadata naming the lease holder (set by fencing.acquire). Azure
# metadata keys must be C identifiers.
OWNER_KEY = "vmdr_writer"
SINCE_KEY = "vmdr_writer_since"

# 412 codes by which the service refuses a write for lease reasons, and what
# each means for the refused writer.
LEASE_REFUSALS = {
    "LeaseIdMissing": "the disk is leased by another writer and this writer sent no lease",
    "LeaseIdMismatchWithBlobOperation": (
        "this writer's lease is no longer the disk's lease (it was broken and taken over)"
    ),
    "LeaseNotPresentWithBlobOperation": "this writer's lease was broken; nobody holds the disk",
    "LeaseLost": "this writer's lease was lost",
}


@dataclass(frozen=True)
class BlobURL:
    account: str
    container: str
    blob: str
    lease: str | None = None
    snapshot: str | None = None

    @property
    def plain(self) -> str:
        """The URL without the lease: for messages and logs (a lease id is a
        write capability for whoever also has the account key)."""
        return self.with_params(lease=None).url

    @property
    def url(self) -> str:
        query = {k: v for k, v in (("lease", self.lease), ("snapshot", self.snapshot)) if v}
        tail = f"?{urlencode(query)}" if query else ""
        return f"pageblob://{self.account}/{self.container}/{self.blob}{tail}"

    def with_params(self, **changes: str | None) -> BlobURL:
        fields = {
            "account": self.account,
            "container": self.container,
            "blob": self.blob,
            "lease": self.lease,
            "snapshot": self.snapshot,
        }
        fields.update(changes)
        return BlobURL(**fields)  # type: ignore[arg-type]


def parse_url(url: str) -> BlobURL:
    parts = urlsplit(url)
    names = [p for p in parts.path.split("/") if p]
    if parts.scheme != "pageblob" or not parts.netloc or len(names) != 2:
        raise BadURL(url=url, detail="expected pageblob://ACCOUNT/CONTAINER/BLOB")
    params = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(params) - {"lease", "snapshot"}
    if unknown:
        raise BadURL(url=url, detail=f"unknown parameter(s) {', '.join(sorted(unknown))}")
    values = {k: v[-1] for k, v in params.items()}
    if any(not v for v in values.values()):
        raise BadURL(url=url, detail="empty lease or snapshot parameter")
    return BlobURL(parts.netloc, names[0], names[1], values.get("lease"), values.get("snapshot"))


def service_client(account_name: str) -> BlobServiceClient:
    account = lookup(account_name)
    conn = (
        f"DefaultEndpointsProtocol={urlsplit(account.endpoint).scheme};"
        f"AccountName={account.name};AccountKey={account.key};BlobEndpoint={account.endpoint};"
    )
    return BlobServiceClient.from_connection_string(
        conn, api_version=API_VERSION, connection_verify=account.connection_verify()
    )


def blob_client(url: str | BlobURL) -> tuple[BlobServiceClient, BlobClient, BlobURL]:
    """A service client (close it when done), the blob's client and the parsed URL."""
    parsed = parse_url(url) if isinstance(url, str) else url
    service = service_client(parsed.account)
    blob = service.get_blob_client(parsed.container, parsed.blob, snapshot=parsed.snapshot)
    return service, blob, parsed


def error_code(exc: BaseException) -> str:
    """The storage service's error code (``LeaseIdMissing``...), or ""."""
    code = getattr(exc, "error_code", None)  # a str, or a StorageErrorCode (a str Enum)
    return str(code.value if isinstance(code, Enum) else code or "")


def error_text(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    code = error_code(exc)
    if code and code not in text:
        text = f"{text} ({code})" if text else code
    return text or type(exc).__name__


def is_lease_refusal(exc: BaseException) -> bool:
    return isinstance(exc, HttpResponseError) and error_code(exc) in LEASE_REFUSALS


def holder_of(blob: BlobClient) -> str:
    """Who holds the disk's lease, as recorded in its metadata, or why unknown."""
    try:
        props = blob.get_blob_properties()
    except AzureError as exc:
        return f"unknown ({error_text(exc)})"
    state = str(props.lease.state or "")
    meta: dict[str, Any] = dict(props.metadata or {})
    owner = meta.get(OWNER_KEY)
    if state not in ("leased", "breaking"):
        return f"nobody (lease {state or 'absent'}; last holder {owner or 'unknown'})"
    if not owner:
        return "an unknown writer (the lease holder did not record its name)"
    since = meta.get(SINCE_KEY)
    return f"{owner!r} since {since}" if since else repr(owner)


def fenced_error(blob: BlobClient, url: BlobURL, exc: HttpResponseError) -> WriteFenced:
    reason = LEASE_REFUSALS.get(error_code(exc), error_text(exc))
    return WriteFenced(url=url.plain, reason=reason, holder=holder_of(blob))
