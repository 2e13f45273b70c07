"""Hashing in worker processes.

xxhash holds the GIL, so threads do not hash in parallel; processes do. A
worker opens the disk again by URL (only ``shareable`` backends can be), or
takes over the descriptor of a file already open (``SharedFile``: what the
services use, which checked the file they opened and must not reopen a path),
hashes its block range and sends back either every ``BlockDigests`` message
(one disk of a DiffResync or Verify, or of a replication's differential sync,
each disk in a worker of its own: ``DigestStream``) or only the coarse map of
its range (``hash_disk`` split across workers).

Workers hash mapped files in place (``hash_segments(mapped=True)``): no copy
into a buffer, about a third less time per disk. A file truncated under a
mapping, or a failing read of a mapped page, raises SIGBUS in the worker,
never in the operation's process, which reports it as ``WorkerFailed``. (A
shrink seen before the mapping is an ``OutOfRange`` or ``BackendIOError``.)

Workers start with ``fork`` while the parent has a single thread (fast: no
re-import), else with ``forkserver``; they ignore SIGINT so that Ctrl-C reaches
only the parent, which then stops them.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import signal
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from multiprocessing import reduction
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from vmdr.blocks.backend import Backend
from vmdr.blocks.errors import TargetTooLarge, WorkerFailed, rebuild_error
from vmdr.blocks.hashing import (
    DEFAULT_BLOCK_SIZE,
    SEGMENT_BYTES,
    Check,
    check_block_size,
    hash_segments,
    no_check,
    segment_blocks,
)
from vmdr.blocks.hashmap import HashMap, HashMapBuilder, assemble
from vmdr.blocks.messages import BlockDigests
from vmdr.blocks.operation import Counters
from vmdr.blocks.urls import open_backend
from vmdr.model.errors import VmdrError

__all__ = [
    "PARALLEL_MIN_BYTES",
    "DigestStream",
    "DigestStreams",
    "SharedFile",
    "digests",
    "hash_disk",
    "hash_ranges",
    "worth_a_worker",
]

log = logging.getLogger(__name__)
Parts = tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]
_POLL_SECONDS = 0.05
# Disk bytes per message from a streaming worker. Fewer, larger messages cost
# this process fewer wake-ups: a DiffResync of the bench pair took 0.537 s with
# 32 MiB, 0.518 s with 128 MiB and 0.517 s with 256 MiB (medians of 6
# interleaved runs); 512 MiB was slower again (docs/performance.md).
STREAM_SEGMENT_BYTES = 256 << 20
PARALLEL_MIN_BYTES = 64 << 20


def worth_a_worker(size: int) -> bool:
    """Hash the disks in workers? Only for disks of 64 MiB or more, and only
    with a second CPU (measured on two: docs/performance.md)."""
    return size >= PARALLEL_MIN_BYTES and len(os.sched_getaffinity(0)) >= 2


def hash_disk(
    backend: Backend,
    block_size: int = DEFAULT_BLOCK_SIZE,
    *,
    workers: int = 1,
    counters: Counters | None = None,
    check: Check = no_check,
) -> HashMap:
    """The hash map of a whole disk. With ``workers > 1`` and a shareable
    backend, ranges of the disk are hashed in that many processes."""
    check_block_size(block_size)
    size = backend.size()
    nblocks = -(-size // block_size)
    seg = segment_blocks(block_size)
    if workers > 1 and backend.shareable and nblocks >= 2 * seg:
        step = -(-nblocks // workers // seg) * seg
        ranges = [(lo, min(lo + step, nblocks)) for lo in range(0, nblocks, step)]
        parts = hash_ranges(backend.url, block_size, ranges, counters=counters, check=check)
        return assemble(size, block_size, parts)
    builder = HashMapBuilder(size, block_size)
    for segment in hash_segments(backend, block_size, counters=counters, check=check):
        builder.add(segment)
    return builder.finish()


def _context() -> BaseContext:
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["vmdr.blocks.parallel"])
    return ctx


def _vmdr_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("VMDR_")}


class SharedFile:
    """An open file for a worker to hash, handed over as the descriptor
    itself, never reopened by path: a service checked the file it opened (a
    datastore path must not lead outside its datastore), and a path can be
    swapped after that check. Under ``fork`` the worker inherits the
    descriptor; through the fork server it is passed with ``SCM_RIGHTS``
    (multiprocessing's ``DupFd``) when the worker's arguments are pickled."""

    def __init__(
        self, url: str, fd: int, fixed_size: int | None = None, *, owned: bool = False
    ) -> None:
        self.url, self.fd, self.fixed_size = url, fd, fixed_size
        self._owned = owned  # received through the fork server: ours to close

    @classmethod
    def of(cls, backend: Backend) -> SharedFile | None:
        """For a mappable file backend; None for any other."""
        from vmdr.blocks.file import FileBackend

        if not isinstance(backend, FileBackend) or not backend.mappable:
            return None
        return cls(backend.url, backend.fd, backend.fixed_size)

    def __reduce__(self) -> tuple[Any, ...]:
        # Only while a worker starts: pickled anywhere else, DupFd would fall
        # back to a descriptor-sharing thread and keep a duplicate open.
        multiprocessing.context.assert_spawning(self)
        return (_rebuild_shared, (self.url, reduction.DupFd(self.fd), self.fixed_size))

    def open(self) -> Backend:
        from vmdr.blocks.file import FileBackend

        # The backend closes its descriptor: give it a duplicate unless this
        # one came through the fork server and is ours alone (then only once).
        if self._owned:
            fd, self.fd, self._owned = self.fd, -1, False
        else:
            fd = os.dup(self.fd)  # EBADF after a hand-over
        return FileBackend(self.url, "r", fd, fixed_size=self.fixed_size)


def _rebuild_shared(url: str, dup: Any, fixed_size: int | None) -> SharedFile:
    return SharedFile(url, dup.detach(), fixed_size, owned=True)


def _open_source(source: str | SharedFile) -> Backend:
    return open_backend(source, "r") if isinstance(source, str) else source.open()


def _worker(
    conn: multiprocessing.connection.Connection,
    source: str | SharedFile,
    block_size: int,
    start: int,
    end: int | None,
    send_segments: bool,
    env: dict[str, str],
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forkserver started earlier holds the environment of that moment; the
    # worker must see the caller's (e.g. VMDR_STORAGE_ACCOUNTS for pageblob:).
    os.environ.update(env)
    url = source if isinstance(source, str) else source.url
    try:
        counters = Counters()
        with _open_source(source) as backend:
            # Only a coarse map needs segment-aligned ranges; a stream may
            # start anywhere (a master target resuming at the caller's block).
            builder = (
                None if send_segments else HashMapBuilder(backend.size(), block_size, start, end)
            )
            for seg in hash_segments(
                backend,
                block_size,
                start_block=start,
                end_block=end,
                counters=counters,
                mapped=True,
                segment_bytes=STREAM_SEGMENT_BYTES if send_segments else SEGMENT_BYTES,
            ):
                if builder is None:
                    conn.send(("seg", seg))
                else:
                    builder.add(seg)
            result: Any = None if builder is None else builder.parts()
        conn.send(("end", counters.read, result))
    except VmdrError as exc:
        conn.send(("error", type(exc), exc.fields))
    except BaseException as exc:  # report anything; the parent raises WorkerFailed
        conn.send(("error", WorkerFailed, {"url": url, "detail": repr(exc)}))
    finally:
        conn.close()


def _exit_detail(code: int | None) -> str:
    if code == -signal.SIGBUS:
        return "SIGBUS: the disk shrank, or a read of it failed, while it was mapped"
    if not code:
        return "it exited without an answer"
    return f"exit code {code}"


class _Worker:
    def __init__(
        self,
        source: str | SharedFile,
        block_size: int,
        start: int,
        end: int | None,
        send_segments: bool,
    ) -> None:
        ctx = _context()
        self.url = url = source if isinstance(source, str) else source.url
        self.conn, child = ctx.Pipe(duplex=False)
        self.proc: BaseProcess = ctx.Process(  # type: ignore[attr-defined]
            target=_worker,
            args=(child, source, block_size, start, end, send_segments, _vmdr_env()),
            daemon=True,
            name=f"vmdr-hash {url}",
        )
        self.proc.start()
        child.close()
        log.debug(
            "worker=%s url=%s start=%d end=%s method=%s",
            self.proc.pid,
            url,
            start,
            end,
            ctx.get_start_method(),
        )

    def recv(self, check: Check) -> tuple[Any, ...]:
        while not self.conn.poll(_POLL_SECONDS):
            check()
            if not self.proc.is_alive() and not self.conn.poll(0):
                raise WorkerFailed(url=self.url, detail=_exit_detail(self.proc.exitcode))
        try:
            msg: tuple[Any, ...] = self.conn.recv()
        except EOFError:
            self.proc.join(1)
            raise WorkerFailed(url=self.url, detail=_exit_detail(self.proc.exitcode)) from None
        if msg[0] == "error":
            raise rebuild_error(msg[1], msg[2])
        return msg

    def close(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
        self.proc.join(5)
        self.conn.close()


class _Closing:
    """Closed at the end of a ``with``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class DigestStream(_Closing):
    """The ``BlockDigests`` of a whole disk, hashed in a worker process while
    the caller does other work. Use as a context manager; after iteration,
    ``read`` is the bytes the worker read."""

    def __init__(
        self,
        source: str | SharedFile,
        block_size: int,
        *,
        start_block: int = 0,
        check: Check = no_check,
    ) -> None:
        self._worker = _Worker(source, block_size, start_block, None, send_segments=True)
        self._check = check
        self.read = 0

    def __iter__(self) -> Iterator[BlockDigests]:
        while True:
            msg = self._worker.recv(self._check)
            if msg[0] == "end":
                self.read = msg[1]
                return
            yield msg[1]

    def close(self) -> None:
        self._worker.close()


class DigestStreams(_Closing):
    """Both disks of a local two-disk operation (DiffResync, Verify) hashed in
    workers: ``theirs`` always, ``mine`` too when that disk is shareable
    (``None`` otherwise: the caller hashes it). ``read`` is the bytes both
    workers read, once they are drained."""

    def __init__(
        self, mine: Backend, theirs: Backend, block_size: int, *, check: Check = no_check
    ) -> None:
        self.theirs = DigestStream(theirs.url, block_size, check=check)
        try:
            self.mine = DigestStream(mine.url, block_size, check=check) if mine.shareable else None
        except BaseException:
            self.theirs.close()
            raise

    @property
    def read(self) -> int:
        return self.theirs.read + (self.mine.read if self.mine is not None else 0)

    def close(self) -> None:
        try:
            if self.mine is not None:
                self.mine.close()
        finally:
            self.theirs.close()


def digests(
    backend: Backend,
    block_size: int,
    stack: ExitStack,
    *,
    start_block: int = 0,
    reopen: bool = False,
    size: int | None = None,
) -> Iterable[BlockDigests]:
    """The disk's ``BlockDigests`` from ``start_block``: streamed by a worker
    process (closed with ``stack``) where one is worth it, else hashed in this
    thread as they are read. A worker takes over the descriptor of an open
    file; ``reopen`` also lets it open another shareable backend by URL, which
    a service must not do with a disk whose path it checked once.

    ``size``: the digests of the disk as if grown to ``size`` — its new part
    reads as zeros, so it is holes — without growing it (a read never changes
    a disk). A last partial block is hashed as it is: at worst it is sent again."""
    current = backend.size()
    if size is not None and size < current:
        raise TargetTooLarge(url=backend.url, target_size=current, source_size=size)
    handoff = SharedFile.of(backend) or (backend.url if reopen and backend.shareable else None)
    if handoff is None or not worth_a_worker(current):
        hashed: Iterable[BlockDigests] = hash_segments(backend, block_size, start_block=start_block)
    else:
        hashed = stack.enter_context(DigestStream(handoff, block_size, start_block=start_block))
    if size is None or size == current:
        return hashed
    first = max(start_block, -(-current // block_size))
    return itertools.chain(hashed, _holes(first, -(-size // block_size), block_size))


def _holes(first: int, end: int, block_size: int) -> Iterator[BlockDigests]:
    for start in range(first, end, _HOLES_PER_SEGMENT):
        yield BlockDigests.holes(start, min(_HOLES_PER_SEGMENT, end - start), block_size)


_HOLES_PER_SEGMENT = 1 << 16


def hash_ranges(
    url: str,
    block_size: int,
    ranges: Sequence[tuple[int, int]],
    *,
    counters: Counters | None = None,
    check: Check = no_check,
) -> list[Parts]:
    """Coarse maps of consecutive segment-aligned block ranges, one worker each."""
    workers = [_Worker(url, block_size, lo, hi, send_segments=False) for lo, hi in ranges]
    try:
        parts: list[Parts] = []
        for worker in workers:
            _, read, part = worker.recv(check)
            if counters is not None:
                counters.read += read
            parts.append(part)
        return parts
    finally:
        for worker in workers:
            worker.close()
