"""Which ranges of a cloud disk changed, and whether the storage service can
be trusted to say.

Azure answers "what changed in this page blob since snapshot S" with a
page-range diff (``list_page_ranges(previous_snapshot=S)``): changed ranges,
and cleared ranges that now read as zeros. Azurite accepts the call but
ignores ``previous_snapshot`` and returns the blob's current ranges with no
cleared ones (docs/emulators.md). Trusting such an answer is doubly wrong: it
copies unchanged data, and it *misses* cleared ranges, which would leave
stale bytes on the target. So vmdr never uses a service's diff before a
probe has shown, on that very service, that the diff is true:

    verdict = diff_is_honest(container)        # a scratch blob, 8 requests
    plan = choose_sync(url, since_snapshot=snap, dirty_map=tracked)
    plan.method   # "service-diff" | "dirty-map" | "diff-resync"

``changed_extents`` raises ``ChangeTrackingUnavailable`` when the service's
diff is not honest; ``choose_sync`` then falls back to vmdr's own dirty map
(writes made through ``TrackedBackend``) and, without one, to a
differential resync (``DiffResync`` hashes both sides).

The probe, on a scratch page blob of four 64 KiB regions::

    before the snapshot:  [ A ][ . ][ B ][ . ]
    after the snapshot:   [ A ][ C ][ 0 ][ . ]     C written, B cleared

A true diff names region 1 (changed) and region 2 (cleared, or changed),
and never region 0. A diff that misses 1 or 2 is unsafe; one that names 0 is
not a diff at all. Either makes the verdict "not honest".
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from azure.core.exceptions import AzureError

from vmdr.blocks.errors import BackendIOError
from vmdr.blocks.extent import Extent, RangeSet, merge_extents
from vmdr.providers.azure.blobs import blob_client, error_text
from vmdr.providers.azure.errors import ChangeTrackingUnavailable

log = logging.getLogger(__name__)

__all__ = [
    "ProbeResult",
    "SyncPlan",
    "changed_extents",
    "choose_sync",
    "diff_extents",
    "diff_is_honest",
    "forget_verdicts",
    "judge",
]

REGION = 64 << 10
PROBE_SIZE = 4 * REGION

SyncMethod = Literal["service-diff", "dirty-map", "diff-resync"]


class PageRangeLike(Protocol):
    start: int
    end: int  # inclusive, as the service reports it
    cleared: bool


class PageBlobLike(Protocol):
    """The few page-blob calls the probe and the diff need (BlobClient has them)."""

    def create_page_blob(self, size: int, **kwargs: Any) -> Any: ...
    def upload_page(self, page: bytes, offset: int, length: int, **kwargs: Any) -> Any: ...
    def clear_page(self, offset: int, length: int, **kwargs: Any) -> Any: ...
    def create_snapshot(self, **kwargs: Any) -> Mapping[str, Any]: ...
    def list_page_ranges(self, **kwargs: Any) -> Iterable[Any]: ...
    def delete_blob(self, delete_snapshots: str | None = None, **kwargs: Any) -> None: ...


class DirtyMapSource(Protocol):
    """vmdr's own dirty map: ``TrackedBackend`` (while written) or ``DirtyMap``."""

    def take(self) -> list[Extent]: ...


class ContainerLike(Protocol):
    @property
    def url(self) -> str: ...

    def get_blob_client(self, blob: str) -> Any: ...


@dataclass(frozen=True)
class ProbeResult:
    honest: bool
    reason: str
    answer: list[Extent] = field(default_factory=list)


def diff_extents(ranges: Iterable[Any]) -> list[Extent]:
    """The service's page ranges (inclusive ends) as extents; cleared ranges
    are ``zero=True`` ("changed, now reads as zeros")."""
    return merge_extents(
        Extent(int(r.start), int(r.end) - int(r.start) + 1, bool(r.cleared)) for r in ranges
    )


def judge(answer: list[Extent]) -> ProbeResult:
    """Decide from the probe's diff whether the service diffs truly (pure)."""
    unchanged = (0, REGION)
    changed = (REGION, 2 * REGION)
    cleared = (2 * REGION, 3 * REGION)
    reported = RangeSet((e.start, e.end) for e in answer)

    def covered(lo: int, hi: int) -> bool:
        return sum(b - a for a, b in reported.overlapping(lo, hi)) == hi - lo

    problems = []
    if list(reported.overlapping(*unchanged)):
        problems.append(
            f"it reports the unchanged range [{unchanged[0]}, {unchanged[1]}) "
            "(current ranges, not a diff)"
        )
    if not covered(*changed):
        problems.append(
            f"it misses the range [{changed[0]}, {changed[1]}) written after the snapshot"
        )
    if not covered(*cleared):
        problems.append(
            f"it misses the range [{cleared[0]}, {cleared[1]}) cleared after the snapshot"
        )
    if problems:
        return ProbeResult(False, "; ".join(problems), answer)
    return ProbeResult(True, "the diff names exactly the changed and cleared ranges", answer)


def diff_is_honest(container: ContainerLike) -> ProbeResult:
    """Probe the service behind ``container`` with a scratch page blob (made
    and deleted here) and judge its page-range diff."""
    blob: PageBlobLike = container.get_blob_client(f"vmdr-diff-probe-{uuid.uuid4().hex}")
    try:
        blob.create_page_blob(size=PROBE_SIZE)
        try:
            blob.upload_page(os.urandom(REGION), offset=0, length=REGION)
            blob.upload_page(os.urandom(REGION), offset=2 * REGION, length=REGION)
            snapshot = blob.create_snapshot()["snapshot"]
            blob.upload_page(os.urandom(REGION), offset=REGION, length=REGION)
            blob.clear_page(offset=2 * REGION, length=REGION)
            answer = diff_extents(blob.list_page_ranges(previous_snapshot=snapshot))
        finally:
            blob.delete_blob(delete_snapshots="include")
    except AzureError as exc:
        detail = f"the page-range diff probe failed: {error_text(exc)}"
        raise BackendIOError(what="probe", url=container.url, detail=detail) from exc
    verdict = judge(answer)
    log.info(
        "page-range diff probe url=%s honest=%s reason=%s",
        container.url,
        verdict.honest,
        verdict.reason,
    )
    return verdict


# One verdict per storage endpoint and process: the answer is a property of
# the service, not of a blob.
_verdicts: dict[str, ProbeResult] = {}
_verdicts_lock = threading.Lock()


def _verdict_for(container: ContainerLike, key: str) -> ProbeResult:
    with _verdicts_lock:
        if key not in _verdicts:
            _verdicts[key] = diff_is_honest(container)
        return _verdicts[key]


def forget_verdicts() -> None:
    with _verdicts_lock:
        _verdicts.clear()


def changed_extents(
    url: str,
    since_snapshot: str,
    *,
    blob: PageBlobLike | None = None,
    verdict: ProbeResult | None = None,
) -> list[Extent]:
    """What changed in the page blob at ``url`` since ``since_snapshot``, from
    the service's diff, or ``ChangeTrackingUnavailable`` when that diff is not
    honest. ``blob`` and ``verdict`` replace the service (for tests)."""
    if blob is not None:
        return _diff(url, since_snapshot, blob, verdict)
    service, client, parsed = blob_client(url)
    with service:
        if verdict is None:
            container = service.get_container_client(parsed.container)
            verdict = _verdict_for(container, service.url)
        return _diff(parsed.plain, since_snapshot, client, verdict)


def _diff(url: str, since: str, blob: PageBlobLike, verdict: ProbeResult | None) -> list[Extent]:
    if verdict is None or not verdict.honest:
        reason = verdict.reason if verdict else "the service's diff was never probed"
        raise ChangeTrackingUnavailable(
            url=url, snapshot=since, reason=f"the service's page-range diff is not honest: {reason}"
        )
    try:
        return diff_extents(blob.list_page_ranges(previous_snapshot=since))
    except AzureError as exc:
        raise BackendIOError(what="page-range diff", url=url, detail=error_text(exc)) from exc


@dataclass(frozen=True)
class SyncPlan:
    """How to bring a copy of the disk up to date, and why that way."""

    method: SyncMethod
    dirty: list[Extent] | None  # the DirtyCopy map; None for diff-resync
    reason: str


def choose_sync(
    url: str,
    *,
    since_snapshot: str | None = None,
    dirty_map: DirtyMapSource | None = None,
    blob: PageBlobLike | None = None,
    verdict: ProbeResult | None = None,
) -> SyncPlan:
    """Pick the cheapest correct way to find what changed:

    1. the service's diff since ``since_snapshot``, if the service is honest
       (it sees every writer, vmdr's or not);
    2. vmdr's dirty map, taken now (only writes made through vmdr);
    3. a differential resync, which needs no history at all.

    A taken dirty map must be ``commit()``-ed after the copy succeeded."""
    reasons = []
    if since_snapshot is not None:
        try:
            dirty = changed_extents(url, since_snapshot, blob=blob, verdict=verdict)
            return SyncPlan("service-diff", dirty, "the service's page-range diff is honest")
        except ChangeTrackingUnavailable as exc:
            reasons.append(str(exc.fields["reason"]))
    else:
        reasons.append("no snapshot to diff against")
    if dirty_map is not None:
        dirty = dirty_map.take()
        reason = "; ".join(reasons) + "; using vmdr's dirty map of the writes made through vmdr"
        return SyncPlan("dirty-map", dirty, reason)
    reasons.append("no vmdr dirty map")
    return SyncPlan("diff-resync", None, "; ".join(reasons) + "; comparing block hashes instead")
