"""One replication on the process server: initial sync, then continuous
replication of changed blocks with recovery points.

Life of a replication (one thread each)::

    initial sync   full copy, or differential resync against the target's digests
                   (change set "initial"; resumes from the master target's ack)
    loop           every `interval` seconds, or at once when a point is asked for:
                     cut   take the dirty map fed by the source side, read those
                           blocks from the source, store the change set in the
                           outbox (durable), then let the dirty map forget them
                     drain send the outbox's change sets in order; each one is
                           deleted when the master target answers with its point

When the master target is unreachable the loop keeps cutting into the outbox
and retries draining with back-off; nothing is lost and order is kept.

Points on a live source: a point holds every block marked dirty before its cut
with the contents read at the cut. It is exactly the source at one moment when
no write lands during the read — the case for points asked for with a tag
(application-consistent: the application is quiesced while the point is cut).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmdr.blocks.copy import DirtyCopySource, FullCopySource
from vmdr.blocks.durable import write_atomically
from vmdr.blocks.messages import BlockDigests, Message
from vmdr.blocks.parallel import digests
from vmdr.blocks.resync import DiffResyncSource
from vmdr.blocks.urls import open_backend
from vmdr.model.errors import VmdrError
from vmdr.providers.azure.tracking import DirtyMap
from vmdr.roles.clients import MasterTargetClient
from vmdr.roles.contracts import CutControl, DigestRequest, DiskSpec
from vmdr.roles.outbox import Outbox
from vmdr.roles.sender import Cut, RateLimiter, resume_offset, send_changeset, trim
from vmdr.transport import frames
from vmdr.transport.errors import ProtocolError
from vmdr.transport.grants import target_names

__all__ = ["Replication", "ReplicationSpec", "digest_stream"]

log = logging.getLogger(__name__)
INITIAL = "initial"
_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True)
class ReplicationSpec:
    id: str
    source: str
    datastore: str | None
    path: str | None
    initial: str = "full"  # or "diff"
    interval: float = 300.0
    block_size: int = 64 << 10
    grant: str | None = None  # the configuration server's, handed to the master target
    device: str | None = None  # the target: a VMDK attached to the master target, or path

    def target(self) -> dict[str, Any]:
        return target_names(self.datastore, self.path, self.device)

    @property
    def disk(self) -> str:
        return self.id


def changeset_name(seq: int) -> str:
    return f"cs-{seq:010d}"


class Replication:
    """State and thread of one replication (see the module docstring)."""

    def __init__(
        self,
        spec: ReplicationSpec,
        state_dir: Path,
        cache_dir: Path,
        client: Callable[[], MasterTargetClient],
        limiter: RateLimiter,
        *,
        cache_limit: int | None = None,
        compress: Callable[[], bool] = lambda: True,
    ) -> None:
        self.spec = spec
        self.state_path = state_dir / f"{spec.id}.json"
        self.client_factory = client
        self.limiter = limiter
        self.compress = compress
        self.outbox = Outbox(cache_dir / spec.id, cache_limit)
        self.state: dict[str, Any] = {"initial_done": False, "next_seq": 1, "last_point": None}
        if self.state_path.exists():
            self.state.update(json.loads(self.state_path.read_text())["state"])
        with open_backend(spec.source, "r") as src:
            size = src.size()
        self.dirty = DirtyMap(
            state_dir / f"{spec.id}.dmap", url=spec.source, size=size, block_size=spec.block_size
        )
        self.sent_bytes = 0
        self.resumed_from = 0  # the last offset a change set was resumed from
        self.error: VmdrError | None = None
        self.phase = "starting"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cut_lock = threading.Lock()
        self._requests: list[tuple[Cut, threading.Event, dict[str, Any]]] = []
        self._waiting: dict[int, list[tuple[Cut, threading.Event, dict[str, Any]]]] = {}
        self._save()
        self._thread = threading.Thread(target=self._run, name=f"repl-{spec.id}", daemon=True)

    # -- API ------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self.dirty.close()

    def mark_dirty(self, extents: list[tuple[int, int]]) -> None:
        self.dirty.mark_many(extents)

    def request_point(self, tag: str | None, kind: str, wait: float) -> dict[str, Any]:
        """Cut a point now; wait up to ``wait`` s for the master target to hold it."""
        done, result = threading.Event(), dict[str, Any]()
        with self._cut_lock:
            self._requests.append((Cut(time.time(), tag, kind), done, result))
        self._wake.set()
        done.wait(wait)
        return dict(result) or {"delivered": False, "pending": True}

    def status(self) -> dict[str, Any]:
        last = self.state.get("last_point")
        return {
            "id": self.spec.id,
            "source": self.spec.source,
            "target": self.spec.target(),
            "phase": self.phase,
            "initial_done": self.state["initial_done"],
            "initial_seconds": self.state.get("initial_seconds"),
            "last_point": last,
            "lag_seconds": round(time.time() - last["time"], 3) if last else None,
            "outbox": {
                "change_sets": len(self.outbox.pending()),
                "bytes": self.outbox.used_bytes(),
            },
            "sent_bytes": self.sent_bytes,
            "resumed_from": self.resumed_from,
            "error": self.error.to_dict() if self.error else None,
        }

    # -- the thread ------------------------------------------------------------
    def _save(self) -> None:
        spec = dict(self.spec.__dict__)
        write_atomically(self.state_path, json.dumps({"spec": spec, "state": self.state}).encode())

    def _run(self) -> None:
        failures = 0
        next_cut = time.monotonic() + self.spec.interval
        while not self._stop.is_set():
            try:
                if not self.state["initial_done"]:
                    self.phase = "initial-sync"
                    self._initial()
                    next_cut = time.monotonic() + self.spec.interval
                self.phase = "replicating"
                if time.monotonic() >= next_cut or self._requests:
                    self._cut()
                    next_cut = time.monotonic() + self.spec.interval
                self._drain()
                self.error, failures = None, 0
            except VmdrError as exc:
                self.error = exc
                self.phase = "retrying"
                log.warning("replication %s: %s", self.spec.id, exc)
                failures += 1
                self._wake.wait(_BACKOFF[min(failures, len(_BACKOFF)) - 1])
                self._wake.clear()
                continue
            timeout = max(0.0, next_cut - time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()
        self.phase = "stopped"

    def _initial(self) -> None:
        spec = self.spec
        started = time.monotonic()
        with self.client_factory() as client, open_backend(spec.source, "r") as src:
            size = src.size()
            client.open_disk(
                spec.disk,
                DiskSpec(
                    **spec.target(),
                    size=size,
                    create=True,
                    grant=spec.grant,
                ),
            )
            offset, point = resume_offset(client, spec.disk, INITIAL)
            if point is None:
                if spec.initial == "diff":
                    answer = self._send_diff(client, src, size, offset)
                else:
                    messages = FullCopySource(src, spec.block_size).messages()
                    answer = self._send(client, INITIAL, trim(messages, offset), offset, True)
                point = answer["point"]
        self.state.update(initial_done=True, last_point=point)
        self.state["initial_seconds"] = round(time.monotonic() - started, 3)
        log.info(
            "replication %s: initial sync done in %.3f s", spec.id, self.state["initial_seconds"]
        )
        self._save()

    def _send_diff(self, client: MasterTargetClient, src: Any, size: int, offset: int) -> Any:
        bs = self.spec.block_size
        request = DigestRequest(block_size=bs, start_block=0, size=size)
        source = DiffResyncSource(src, bs)
        with ExitStack() as stack:
            raw = stack.enter_context(client.digests(self.spec.disk, request))
            theirs = digest_stream(raw)
            # The source is hashed in a worker process where worth it (mapped,
            # from the descriptor opened here), else in this thread.
            mine = digests(src, bs, stack, reopen=True)

            def messages() -> Iterator[Message]:
                yield source.begin()
                yield from source.diff(theirs, mine)

            return self._send(client, INITIAL, trim(messages(), offset), offset, True)

    def _send(
        self,
        client: MasterTargetClient,
        changeset: str,
        messages: Any,
        offset: int,
        initial: bool,
        cut: Cut | Callable[[], Cut] | None = None,
    ) -> dict[str, Any]:
        if offset > 0:
            self.resumed_from = offset
            log.info("replication %s: resuming %s from offset %d", self.spec.id, changeset, offset)
        answer = send_changeset(
            client,
            self.spec.disk,
            changeset,
            messages,
            initial=initial,
            resume_from=offset,
            cut=cut or (lambda: Cut(time.time(), None, "initial" if initial else "crash")),
            compress=self.compress(),
            limiter=self.limiter,
        )
        self.sent_bytes += answer["sent"]
        return answer

    def _cut(self) -> None:
        self.outbox.check_room()
        with self._cut_lock:
            requests, self._requests = self._requests, []
        cut = requests[-1][0] if requests else Cut(time.time())
        cut = Cut(time.time(), cut.tag, cut.kind)
        seq = int(self.state["next_seq"])
        extents = self.dirty.take()
        with open_backend(self.spec.source, "r") as src:
            source = DirtyCopySource(src, extents, self.spec.block_size)
            self.outbox.put(seq, _encode(source.messages(), cut))
        self.dirty.commit()
        self.state["next_seq"] = seq + 1
        self._save()
        for _, _, result in requests:
            result.update(changeset=changeset_name(seq), delivered=False)
        self._waiting[seq] = requests

    def _drain(self) -> None:
        pending = self.outbox.pending()
        if not pending:
            return
        with self.client_factory() as client:
            for seq in pending:
                name = changeset_name(seq)
                offset, point = resume_offset(client, self.spec.disk, name)
                if point is None:
                    stored = StoredChangeset(self.outbox.path(seq))
                    answer = self._send(client, name, trim(stored.messages(), offset), offset,
                                        False, stored.cut)  # fmt: skip
                    point = answer["point"]
                self.outbox.remove(seq)
                self.state["last_point"] = point
                self._save()
                for _, done, result in self._waiting.pop(seq, []):
                    result.update(changeset=name, delivered=True, point=point)
                    done.set()


def _encode(messages: Iterator[Message], cut: Cut) -> Iterator[bytes | memoryview]:
    """Frames of a change set for the outbox. Each message is encoded before
    the next is read: a DataRun's data is a view valid until the next run."""
    encoder = frames.Encoder(compress=False)
    for msg in messages:
        yield from encoder.encode(msg)
    yield from encoder.encode(frames.Control(cut.to_dict()))


def digest_stream(raw: Iterator[bytes]) -> Iterator[BlockDigests]:
    """The ``BlockDigests`` of a master target's digest stream."""
    for msg in frames.iter_messages(raw):
        if isinstance(msg, BlockDigests):
            yield msg
        elif isinstance(msg, frames.End):
            return


class StoredChangeset:
    """A change set from the outbox, streamed from its file a MiB at a time
    (a change set of any size is sent in bounded memory); its cut, the last
    frame, is known once the messages have been read, which is when the
    sender asks for it."""

    CHUNK = 1 << 20

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cut: Cut | None = None

    def messages(self) -> Iterator[Message]:
        with open(self.path, "rb") as f:
            for msg in frames.iter_messages(iter(lambda: f.read(self.CHUNK), b"")):
                if isinstance(msg, frames.Control):
                    c = CutControl.model_validate(msg.data)
                    self._cut = Cut(c.time, c.tag, c.kind)
                elif not isinstance(msg, frames.End):
                    yield msg

    def cut(self) -> Cut:
        if self._cut is None:
            raise ProtocolError(detail=f"{self.path.name} ends without its cut")
        return self._cut
