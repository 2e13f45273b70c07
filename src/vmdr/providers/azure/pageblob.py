"""The ``pageblob:`` backend: a cloud disk as an Azure page blob.

``pageblob://ACCOUNT/CONTAINER/BLOB[?lease=ID][&snapshot=TS]`` (URL details in
``blobs.py``, credentials in ``accounts.py``). A page blob is a sparse disk of
512-byte pages: writes must be page-aligned and at most 4 MiB per Put Page
call, reads are ranged GETs, and the blob's valid page ranges are its data
extents (everything else reads as zeros).

Writes: neighbouring writes are combined into Put Page calls of up to 4 MiB
and sent with several requests in flight (one Put Page waits on the network
most of its time), bounded so memory stays small; ``flush`` waits for all of
them and raises the first failure. A write refused for lease reasons (the
writer was fenced, ``fencing.py``) raises ``WriteFenced`` from the call that
waits for it, and every later write on this backend raises it again.

Reads: one ranged GET per ``READ_PART`` bytes, up to ``READ_PARALLEL`` of them
at once, written straight into the caller's buffer. The SDK's
``download_blob`` is not used for reads: on a page blob it asks for the whole
blob's page-range list after every download (one more request, as large as
the blob is fragmented), which made a 256 KiB read cost two round trips. The
ranged GET goes through the SDK's generated client (``BlobClient._client``),
a private attribute; ``test_pageblob.py`` pins that it still works.
``preferred_read`` tells the block engine to read in 4 MiB pieces.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from azure.core.exceptions import (
    AzureError,
    DecodeError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceResponseError,
)
from azure.storage.blob import BlobClient, BlobServiceClient

from vmdr.blocks.backend import Backend, Mode, ReadableBuffer, WritableBuffer
from vmdr.blocks.errors import BackendIOError, BadURL, DiskNotFound, ReadOnlyTarget
from vmdr.blocks.extent import Extent
from vmdr.providers.azure.blobs import (
    BlobURL,
    blob_client,
    error_text,
    fenced_error,
    is_lease_refusal,
    parse_url,
    service_client,
)
from vmdr.providers.azure.errors import WriteFenced

__all__ = [
    "PAGE",
    "PUT_PAGE_MAX",
    "PageBlobBackend",
    "create",
    "delete",
    "exists",
    "open_pageblob",
    "open_url",
    "parse_url",
    "service_client",
    "snapshot",
]

PAGE = 512
PUT_PAGE_MAX = 4 << 20
# Put Page calls in flight. Scattered 64 KiB writes (a changed-areas cycle)
# are one call each: 300 of them on Azurite took 3.0 s with 4, 2.3 s with 8,
# 2.4 s with 16 (docs/performance.md, "Protect cycle"); sequential 4 MiB
# writes were no slower with 8.
IN_FLIGHT = 8
READ_PART = 2 << 20  # measured on Azurite: 1 MiB parts are slower than 2 MiB (docs/azure.md)
READ_PARALLEL = 4
_RETRYABLE_READ = (ServiceResponseError, IncompleteReadError, DecodeError)


class PageBlobBackend(Backend):
    block_alignment = PAGE
    max_write = PUT_PAGE_MAX
    preferred_read = 4 << 20
    shareable = True

    def __init__(
        self,
        url: str,
        mode: Mode,
        service: BlobServiceClient,
        blob: BlobClient,
        *,
        parsed: BlobURL | None = None,
        size: int | None = None,
    ) -> None:
        super().__init__(url, mode)
        self._service = service
        self._blob = blob
        self._where = parsed if parsed is not None else parse_url(url)
        self.lease = self._where.lease
        self._size = int(blob.get_blob_properties().size) if size is None else size
        # The generated client's ranged GET (see the module docstring).
        self._raw: Any = blob._client.blob
        self._pool = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="pageblob-put")
        self._reader: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []
        self._slots = threading.BoundedSemaphore(IN_FLIGHT * 2)
        self._combine = bytearray()
        self._combine_at = 0
        self._fenced: WriteFenced | None = None

    def __enter__(self) -> PageBlobBackend:
        return self

    def size(self) -> int:
        return self._size

    # -- reads ----------------------------------------------------------------
    def readinto(self, offset: int, buf: WritableBuffer) -> int:
        view = memoryview(buf).cast("B")
        length = len(view)
        self._check_range("read", offset, length, self._size)
        if not length:
            return 0
        self._wait_pending()  # read-your-writes
        if length < 2 * READ_PART:
            self._get(offset, view)
            return length
        if self._reader is None:
            self._reader = ThreadPoolExecutor(READ_PARALLEL, thread_name_prefix="pageblob-get")
        part = max(READ_PART, -(-length // READ_PARALLEL // PAGE) * PAGE)
        futures = [
            self._reader.submit(self._get, offset + pos, view[pos : pos + part])
            for pos in range(0, length, part)
        ]
        first: BaseException | None = None
        for future in futures:
            exc = future.exception()
            if exc is not None and first is None:
                first = exc
        if first is not None:
            raise first
        return length

    def _get(self, offset: int, view: memoryview) -> None:
        """One ranged GET into ``view`` (retried once if the body breaks off)."""
        byte_range = f"bytes={offset}-{offset + len(view) - 1}"
        for attempt in (1, 2):
            pos = 0
            try:
                chunks = self._raw.download(range=byte_range, snapshot=self._where.snapshot)
                for chunk in chunks:
                    end = pos + len(chunk)
                    if end > len(view):
                        break
                    view[pos:end] = chunk
                    pos = end
                break
            except _RETRYABLE_READ as exc:
                if attempt == 2:
                    raise self._error("read", exc) from exc
            except AzureError as exc:
                raise self._error("read", exc) from exc
        if pos != len(view):
            detail = f"{byte_range}: got {pos} of {len(view)} bytes"
            raise BackendIOError(what="read", url=self._where.plain, detail=detail)

    # -- writes ---------------------------------------------------------------
    def write(self, offset: int, buf: ReadableBuffer) -> int:
        self._check_writable()
        self._check_fence()
        view = memoryview(buf).cast("B")
        length = len(view)
        self._check_range("write", offset, length, self._size)
        # Combine neighbouring small writes into Put Page calls of up to 4 MiB:
        # per-request latency, not bandwidth, bounds a page blob's throughput.
        if self._combine and self._combine_at + len(self._combine) != offset:
            self._send_combined()
        pos = 0
        while pos < length:
            if not self._combine:
                self._combine_at = offset + pos
                if length - pos >= PUT_PAGE_MAX:  # a whole request: one copy, no combining
                    self._submit(self._put, offset + pos, bytes(view[pos : pos + PUT_PAGE_MAX]))
                    pos += PUT_PAGE_MAX
                    continue
            room = PUT_PAGE_MAX - len(self._combine)
            self._combine += view[pos : pos + room]
            pos += min(room, length - pos)
            if len(self._combine) == PUT_PAGE_MAX:
                self._send_combined()
        return length

    def _send_combined(self) -> None:
        if self._combine:
            chunk, self._combine = self._combine, bytearray()
            self._submit(self._put, self._combine_at, bytes(chunk))

    def _put(self, offset: int, chunk: bytes) -> None:
        self._blob.upload_page(chunk, offset=offset, length=len(chunk), lease=self.lease)

    def zero(self, offset: int, length: int) -> None:
        self._check_writable()
        self._check_fence()
        self._check_range("zero", offset, length, self._size)
        if length:
            self._wait_pending()  # a clear must not overtake an earlier write
            self._call(
                "zero", self._blob.clear_page, offset=offset, length=length, lease=self.lease
            )

    def flush(self) -> None:
        self._wait_pending()

    def extents(self, context: str = "zero") -> Iterator[Extent]:
        self._check_context(context)
        self._wait_pending()
        pos = 0
        ranges = self._call("extents", lambda: list(self._blob.list_page_ranges()))
        data: list[tuple[int, int]] = []
        for r in sorted((r for r in ranges if not r.cleared), key=lambda r: r.start):
            start, end = int(r.start), min(int(r.end) + 1, self._size)
            if data and data[-1][1] == start:  # the service does not merge neighbours
                data[-1] = (data[-1][0], end)
            elif end > start:
                data.append((start, end))
        for start, end in data:
            if start > pos:
                yield Extent(pos, start - pos, zero=True)
            yield Extent(start, end - start, zero=False)
            pos = end
        if pos < self._size:
            yield Extent(pos, self._size - pos, zero=True)

    def resize(self, size: int) -> None:
        self._check_writable()
        self._check_fence()
        if size % PAGE:
            detail = f"a page blob's size must be a multiple of {PAGE}, not {size}"
            raise BadURL(url=self._where.plain, detail=detail)
        self._wait_pending()
        self._call("resize", self._blob.resize_blob, size, lease=self.lease)
        self._size = size

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._wait_pending()
        finally:
            self._pool.shutdown(wait=True)
            if self._reader is not None:
                self._reader.shutdown(wait=True)
            self._service.close()
            self.closed = True

    def __repr__(self) -> str:
        return f"<PageBlobBackend {self._where.plain!r} mode={self.mode}>"

    # -- requests in flight, errors ---------------------------------------------
    def _submit(self, fn: Any, *args: Any) -> None:
        self._slots.acquire()
        future = self._pool.submit(fn, *args)
        future.add_done_callback(lambda _: self._slots.release())
        self._pending.append(future)
        if len(self._pending) > IN_FLIGHT * 4:
            self._pending = [f for f in self._pending if not f.done() or f.exception()]

    def _wait_pending(self) -> None:
        self._send_combined()
        pending, self._pending = self._pending, []
        first: BaseException | None = None
        for future in pending:
            exc = future.exception()
            if exc is not None and first is None:
                first = exc
        if first is not None:
            raise self._error("write", first) from first

    def _check_fence(self) -> None:
        if self._fenced is not None:
            raise self._fenced

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AzureError as exc:
            raise self._error(what, exc) from exc

    def _error(self, what: str, exc: BaseException) -> Exception:
        if isinstance(exc, HttpResponseError) and is_lease_refusal(exc):
            self._fenced = fenced_error(self._blob, self._where, exc)
            return self._fenced
        return BackendIOError(what=what, url=self._where.plain, detail=error_text(exc))


# -- opening, creating, deleting -------------------------------------------------


def open_url(url: str, mode: Mode, create: bool) -> PageBlobBackend:
    return open_pageblob(url, mode, create=create)


def open_pageblob(
    url: str,
    mode: Mode = "r",
    *,
    create: bool = False,
    size: int = 0,
    metadata: dict[str, str] | None = None,
) -> PageBlobBackend:
    """Open the page blob at ``url``; with ``create``, a missing blob is made
    with ``size`` bytes (all reading as zeros) and ``metadata``."""
    if mode not in ("r", "rw"):
        raise ValueError(f"mode must be 'r' or 'rw', not {mode!r}")
    service, blob, parsed = blob_client(url)
    try:
        if parsed.snapshot and mode == "rw":
            raise ReadOnlyTarget(url=parsed.plain, detail="a snapshot is read-only")
        known: int | None = None
        if create and not blob.exists():
            _create(service, blob, parsed, size, metadata)
            known = size
        return PageBlobBackend(url, mode, service, blob, parsed=parsed, size=known)
    except ResourceNotFoundError as exc:
        service.close()
        raise DiskNotFound(url=parsed.plain) from exc
    except AzureError as exc:
        service.close()
        raise BackendIOError(what="open", url=parsed.plain, detail=error_text(exc)) from exc
    except BaseException:
        service.close()
        raise


def _create(
    service: BlobServiceClient,
    blob: BlobClient,
    parsed: BlobURL,
    size: int,
    metadata: dict[str, str] | None,
) -> None:
    if size < 0 or size % PAGE:
        detail = f"a page blob's size must be a multiple of {PAGE}, not {size}"
        raise BadURL(url=parsed.plain, detail=detail)
    container = service.get_container_client(parsed.container)
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    blob.create_page_blob(size=size, metadata=metadata)


def create(
    url: str, size: int, *, metadata: dict[str, str] | None = None, exist_ok: bool = False
) -> bool:
    """Make an empty page blob of ``size`` bytes (and its container). Returns
    False if it existed already (then nothing is changed; an error unless
    ``exist_ok``)."""
    service, blob, parsed = blob_client(url)
    with service:
        try:
            if blob.exists():
                if exist_ok:
                    return False
                raise BadURL(url=parsed.plain, detail="the blob exists already")
            _create(service, blob, parsed, size, metadata)
            return True
        except AzureError as exc:
            raise BackendIOError(what="create", url=parsed.plain, detail=error_text(exc)) from exc


def delete(url: str) -> bool:
    """Delete the page blob and its snapshots. Returns False if there was none.

    A leased blob is deleted only with its lease in the URL (``?lease=``);
    without it the service refuses and this raises ``WriteFenced``."""
    service, blob, parsed = blob_client(url)
    with service:
        try:
            if parsed.snapshot:  # just this snapshot
                blob.delete_blob()
            else:
                blob.delete_blob(delete_snapshots="include", lease=parsed.lease)
            return True
        except ResourceNotFoundError:
            return False
        except HttpResponseError as exc:
            if is_lease_refusal(exc):
                raise fenced_error(blob, parsed, exc) from exc
            raise BackendIOError(what="delete", url=parsed.plain, detail=error_text(exc)) from exc
        except AzureError as exc:
            raise BackendIOError(what="delete", url=parsed.plain, detail=error_text(exc)) from exc


def exists(url: str) -> bool:
    service, blob, parsed = blob_client(url)
    with service:
        try:
            return bool(blob.exists())
        except AzureError as exc:
            raise BackendIOError(what="exists", url=parsed.plain, detail=error_text(exc)) from exc


def snapshot(url: str) -> str:
    """Take a snapshot of the page blob; return its read-only URL.

    A recovery point of a cloud disk: its bytes at this moment, kept by the
    storage service until the blob is deleted."""
    service, blob, parsed = blob_client(url)
    with service:
        try:
            taken = blob.create_snapshot(lease=parsed.lease)
        except AzureError as exc:
            raise BackendIOError(what="snapshot", url=parsed.plain, detail=error_text(exc)) from exc
    return parsed.with_params(lease=None, snapshot=str(taken["snapshot"])).url
