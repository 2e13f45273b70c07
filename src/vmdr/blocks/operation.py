"""What every data-moving operation shares: byte counters, progress reports,
cancellation, and the target half that applies a message stream to a disk.

An operation is an object built with its backends and options; ``run()`` does
the work in the calling thread and returns its result; ``cancel()`` may be
called from any thread (or a signal handler) and makes ``run()`` raise
``OperationCancelled`` at the next chunk boundary (every MiB or so).
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

from vmdr.blocks.backend import Backend
from vmdr.blocks.errors import OperationCancelled, ReadOnlyTarget, StreamError, TargetTooLarge
from vmdr.blocks.extent import RangeSet
from vmdr.blocks.messages import BlockDigests, DataRun, DiskInfo, Done, Message, ZeroRun

__all__ = ["Counters", "Operation", "ProgressCallback", "TargetWriter", "prepare_target"]

R = TypeVar("R")
log = logging.getLogger(__name__)


@dataclass
class Counters:
    """Bytes an operation moved or avoided moving.

    ``sent + skipped_zero + skipped_equal == size`` for every finished copy:
    each byte of the source was either sent, known to be zero, or known to be
    on the target already.

    read           bytes read from disks (both sides when run in one process)
    sent           bytes of data put into DataRun messages (what a network carries)
    written        bytes written to the target
    zeroed         bytes zeroed on the target because it held data there
    skipped_zero   source bytes not sent because they read as zeros
    skipped_equal  source bytes not sent because the target had them already
    done, total    progress through the source, in bytes
    seconds        wall time of run()
    """

    read: int = 0
    sent: int = 0
    written: int = 0
    zeroed: int = 0
    skipped_zero: int = 0
    skipped_equal: int = 0
    done: int = 0
    total: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[Counters], None]


class Operation(abc.ABC, Generic[R]):
    """Base of FullCopy, DiffResync, DirtyCopy and Verify."""

    name = "operation"
    progress_interval = 0.1  # seconds between progress reports

    def __init__(self, *, progress: ProgressCallback | None = None) -> None:
        self.counters = Counters()
        self._progress = progress
        self._cancelled = threading.Event()
        self._last_report = 0.0
        self._started = False

    def run(self) -> R:
        if self._started:
            raise RuntimeError(f"{self.name} already ran; build a new operation to run again")
        self._started = True
        start = time.monotonic()
        log.debug("op=%s state=started", self.name)
        state = "failed"
        try:
            result = self._run()
            state = "done"
            return result
        except OperationCancelled:
            state = "cancelled"
            raise
        finally:
            c = self.counters
            c.seconds = time.monotonic() - start
            log.info(
                "op=%s state=%s seconds=%.3f done=%d total=%d read=%d sent=%d written=%d "
                "zeroed=%d skipped_zero=%d skipped_equal=%d",
                self.name,
                state,
                c.seconds,
                c.done,
                c.total,
                c.read,
                c.sent,
                c.written,
                c.zeroed,
                c.skipped_zero,
                c.skipped_equal,
            )
            if self._progress is not None:
                self._progress(self.counters)

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        """Called by the halves between chunks: stop if cancelled, report progress."""
        if self._cancelled.is_set():
            raise OperationCancelled(
                operation=self.name, done=self.counters.done, total=self.counters.total
            )
        if self._progress is not None:
            now = time.monotonic()
            if now - self._last_report >= self.progress_interval:
                self._last_report = now
                self._progress(self.counters)

    @abc.abstractmethod
    def _run(self) -> R: ...


def prepare_target(dst: Backend, size: int) -> None:
    """Make ``dst`` the source's ``size``: grow it, or refuse if it is larger."""
    if dst.mode != "rw":
        raise ReadOnlyTarget(url=dst.url, detail="opened read-only")
    current = dst.size()
    if current > size:
        raise TargetTooLarge(url=dst.url, target_size=current, source_size=size)
    if current < size:
        dst.resize(size)


class TargetWriter:
    """The target half of every copy: applies a message stream to a disk.

    It takes ``DiskInfo`` (grow the target, or refuse a larger one),
    ``DataRun`` (write, split to the backend's ``max_write``), ``ZeroRun``
    (make zero) and ``Done`` (flush).

    Zeroing is minimal: when the stream starts, the writer asks the target
    where it holds data (``extents``), and a ``ZeroRun`` zeroes only the parts
    of its range that hold data. A fresh or sparse target therefore costs
    nothing for the source's holes, and a dirty target gets exactly its stale
    data zeroed. This is sound because runs arrive in ascending offset order
    (checked): the writer never zeroes a range it wrote during this stream."""

    def __init__(self, dst: Backend, counters: Counters | None = None) -> None:
        if dst.mode != "rw":
            raise ReadOnlyTarget(url=dst.url, detail="opened read-only")
        self.dst = dst
        self.counters = counters if counters is not None else Counters()
        self._info: DiskInfo | None = None
        self._data = RangeSet()
        self._pos = 0
        self.done = False

    def apply(self, msg: Message) -> None:
        if isinstance(msg, DataRun):
            self._write(msg)
        elif isinstance(msg, ZeroRun):
            self._zero(msg)
        elif isinstance(msg, DiskInfo):
            self.begin(msg)
        elif isinstance(msg, Done):
            self.finish(msg)
        elif isinstance(msg, BlockDigests):
            raise StreamError(detail="a target does not take digests")
        else:  # pragma: no cover - Message is a closed union
            raise StreamError(detail=f"unknown message {type(msg).__name__}")

    def begin(self, info: DiskInfo) -> None:
        if self._info is not None:
            raise StreamError(detail="DiskInfo sent twice")
        prepare_target(self.dst, info.size)
        self._info = info
        self._data = RangeSet.data_of(self.dst.extents())

    def _started(self) -> DiskInfo:
        if self._info is None:
            raise StreamError(detail="data before DiskInfo")
        if self.done:
            raise StreamError(detail="data after Done")
        return self._info

    def _advance(self, offset: int, length: int) -> None:
        info = self._started()
        if offset < self._pos:
            raise StreamError(detail=f"offset {offset} after {self._pos}: runs must ascend")
        if offset + length > info.size:
            raise StreamError(detail=f"run at {offset}+{length} is past the end ({info.size})")
        self._pos = offset + length

    def _write(self, run: DataRun) -> None:
        view = memoryview(run.data).cast("B")
        self._advance(run.offset, len(view))
        step = self.dst.max_write
        for pos in range(0, len(view), step):
            self.counters.written += self.dst.write(run.offset + pos, view[pos : pos + step])

    def _zero(self, run: ZeroRun) -> None:
        self._advance(run.offset, run.length)
        for lo, hi in self._data.overlapping(run.offset, run.offset + run.length):
            self.dst.zero(lo, hi - lo)
            self.counters.zeroed += hi - lo

    def finish(self, done: Done) -> None:
        info = self._started()
        if done.size != info.size:
            raise StreamError(detail=f"Done for {done.size} bytes, DiskInfo said {info.size}")
        self.dst.flush()
        self.done = True
