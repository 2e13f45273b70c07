"""Fencing: exactly one site writes a cloud disk, enforced by the storage service.

The writer of a disk holds an infinite blob lease. It opens the disk with the
lease in the URL (``Lease.url``, ``pageblob://A/C/B?lease=ID``), and the page
blob backend sends the lease id with every Put Page, Clear Pages and resize.
The service then refuses (412) any write that does not carry the current
lease: a second writer, a writer whose lease was broken by a take-over, or one
that never had a lease. vmdr turns that refusal into ``WriteFenced``
(VMDR-E0703), naming the current holder.

    lease = acquire(url, owner="onprem:mt-01/job-17")    # DiskLeased if held
    with open_backend(lease.url, "rw") as disk: ...
    previous = break_(url)            # failover / failback / reprotect takes over
    lease = acquire(url, owner="cloud:web-01")
    release(lease)

The holder's name and the time it took the lease are stored in the blob's
metadata (``vmdr_writer``, ``vmdr_writer_since``), so an error can say who
owns the disk. The lease id itself is the fencing token: it is never stored
in the blob.

A break is immediate (break period 0): the workflow that breaks a lease has
already decided the old writer is gone or must be stopped (failover), so it
does not wait for the old writer's in-flight writes. Those are refused, not
half-applied: each Put Page is atomic on the service.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobLeaseClient

from vmdr.blocks.errors import BackendIOError, DiskNotFound
from vmdr.providers.azure.blobs import (
    OWNER_KEY,
    SINCE_KEY,
    BlobURL,
    blob_client,
    error_code,
    error_text,
    holder_of,
    parse_url,
)
from vmdr.providers.azure.errors import DiskLeased, LeaseNotHeld

__all__ = ["Lease", "LeaseInfo", "acquire", "break_", "holder", "release", "take_over"]

INFINITE = -1


@dataclass(frozen=True)
class Lease:
    """A held lease: open ``url`` to write the disk under it."""

    url: str
    lease_id: str
    owner: str


@dataclass(frozen=True)
class LeaseInfo:
    state: str  # available | leased | breaking | broken | expired
    owner: str | None  # from metadata: the current holder, or the last one
    since: str | None

    @property
    def held(self) -> bool:
        return self.state in ("leased", "breaking")


def acquire(url: str, owner: str, *, lease_id: str | None = None) -> Lease:
    """Take the disk's infinite lease for ``owner``.

    Raises ``DiskLeased`` if another writer holds it. With the ``lease_id``
    of a lease this owner already holds, acquiring again succeeds (a workflow
    step can be re-run)."""
    service, blob, parsed = blob_client(_plain(url))
    with service:
        lease = BlobLeaseClient(blob, lease_id=lease_id or str(uuid.uuid4()))
        try:
            lease.acquire(lease_duration=INFINITE)
        except HttpResponseError as exc:
            if error_code(exc) in ("LeaseAlreadyPresent", "LeaseIsBreakingAndCannotBeAcquired"):
                raise DiskLeased(url=parsed.plain, holder=holder_of(blob)) from exc
            raise _translated("acquire lease", parsed, exc) from exc
        except AzureError as exc:
            raise _translated("acquire lease", parsed, exc) from exc
        try:
            _record_owner(blob, parsed, lease.id, owner)
        except BaseException:
            with contextlib.suppress(AzureError):  # do not keep a lease nobody can name
                lease.release()
            raise
        return Lease(parsed.with_params(lease=lease.id).url, lease.id, owner)


def break_(url: str) -> str | None:
    """Break the disk's lease at once, whoever holds it; returns the holder's
    recorded name (None if nobody held it). The old holder's writes are
    refused from now on."""
    service, blob, parsed = blob_client(_plain(url))
    with service:
        info = _info(blob, parsed)
        if not info.held:
            return None
        try:
            BlobLeaseClient(blob).break_lease(lease_break_period=0)
        except HttpResponseError as exc:
            if error_code(exc) == "LeaseNotPresentWithLeaseOperation":
                return None  # released or broken meanwhile: the result is the same
            raise _translated("break lease", parsed, exc) from exc
        except AzureError as exc:
            raise _translated("break lease", parsed, exc) from exc
        return info.owner


def take_over(url: str, owner: str) -> tuple[Lease, str | None]:
    """Break whatever lease the disk has and acquire it for ``owner`` (the
    failover, failback and reprotect step). Returns the new lease and the
    previous holder."""
    previous = break_(url)
    return acquire(url, owner), previous


def release(lease: Lease | str) -> None:
    """Give the lease back (``lease`` or a URL carrying ``?lease=``). Raises
    ``LeaseNotHeld`` if it is no longer the disk's lease."""
    url = lease.url if isinstance(lease, Lease) else lease
    service, blob, parsed = blob_client(url)
    if parsed.lease is None:
        service.close()
        raise LeaseNotHeld(lease_id=None, url=parsed.plain, detail="the URL carries no lease")
    with service:
        try:
            BlobLeaseClient(blob, lease_id=parsed.lease).release()
        except HttpResponseError as exc:
            if error_code(exc).startswith(("LeaseIdMismatch", "LeaseNotPresent", "LeaseLost")):
                detail = f"the disk's writer is {holder_of(blob)}"
                raise LeaseNotHeld(lease_id=parsed.lease, url=parsed.plain, detail=detail) from exc
            raise _translated("release lease", parsed, exc) from exc
        except AzureError as exc:
            raise _translated("release lease", parsed, exc) from exc


def holder(url: str) -> LeaseInfo:
    """The disk's lease state and its recorded holder."""
    service, blob, parsed = blob_client(_plain(url))
    with service:
        return _info(blob, parsed)


# -- helpers ------------------------------------------------------------------------


def _plain(url: str) -> str:
    """Lease operations address the blob, not a lease (nor a snapshot)."""
    return parse_url(url).with_params(lease=None, snapshot=None).url


def _info(blob: BlobClient, parsed: BlobURL) -> LeaseInfo:
    try:
        props = blob.get_blob_properties()
    except AzureError as exc:
        raise _translated("read lease state", parsed, exc) from exc
    meta = dict(props.metadata or {})
    return LeaseInfo(
        str(props.lease.state or "available"), meta.get(OWNER_KEY), meta.get(SINCE_KEY)
    )


def _record_owner(blob: BlobClient, parsed: BlobURL, lease_id: str, owner: str) -> None:
    try:
        meta = dict(blob.get_blob_properties().metadata or {})
        meta[OWNER_KEY] = owner
        meta[SINCE_KEY] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        blob.set_blob_metadata(meta, lease=lease_id)
    except AzureError as exc:
        raise _translated("record lease owner", parsed, exc) from exc


def _translated(what: str, parsed: BlobURL, exc: AzureError) -> Exception:
    if isinstance(exc, ResourceNotFoundError):
        return DiskNotFound(url=parsed.plain)
    return BackendIOError(what=what, url=parsed.plain, detail=error_text(exc))
