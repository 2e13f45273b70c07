"""The master target: receives replication data, journals it on the
retention drive, writes it into disks on its datastores, cuts recovery points.

REST (all under token auth, see ``transport.service``)::

    PUT  /v1/disks/{disk}                 {device | datastore+path, size, create, grant}: register
    GET  /v1/disks/{disk}                 the disk, its open change set (acked), newest point
    DELETE /v1/disks/{disk}               forget it (journal, points); the file stays
    GET  /v1/disks/{disk}/points          recovery points
    POST /v1/disks/{disk}/digests         {block_size, start_block, size} -> BlockDigests frames
    POST /v1/disks/{disk}/changesets/{cs} frame stream in -> {acked, point}
    POST /v1/disks/{disk}/materialise     {point, device | datastore+path, grant}: a disk as
                                          at that point
    GET  /v1/retention                    retention drive usage
    GET  /v1/quarantine                   disk records set aside at start, and why

One change set per disk at a time (a second gets 409). A disk is a VMDK the
configuration server attached to this master target's VM, named by its UUID
and found under by-id, or a file inside the configured datastore roots
(``roles.targets``), and only one the configuration server assigned:
registering a disk and materialising a point each need its grant naming that
disk and that target (``transport.grants``).
A materialise writes a file no registered disk uses, one writer at a time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Generator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from vmdr.blocks.backend import Backend
from vmdr.blocks.durable import write_atomically
from vmdr.blocks.errors import TargetTooLarge
from vmdr.blocks.hashing import check_block_size
from vmdr.blocks.parallel import digests
from vmdr.blocks.retention import RecoveryPoint, RetentionStore
from vmdr.model.errors import VmdrError, validation_summary
from vmdr.model.ids import is_id
from vmdr.roles.apply import ChangeSetApplier, SessionError, load_session
from vmdr.roles.byid import DeviceFolder
from vmdr.roles.contracts import (
    BeginControl,
    CutControl,
    DigestRequest,
    DiskSpec,
    MaterialiseRequest,
)
from vmdr.roles.datastores import DatastoreRoots
from vmdr.roles.targets import Targets, Where
from vmdr.transport import frames
from vmdr.transport.auth import TokenStore
from vmdr.transport.grants import MATERIALISE, REPLICATE, GrantRefused, GrantVerifier
from vmdr.transport.service import body_chunks, create_app

__all__ = ["MasterTarget", "MasterTargetSettings", "build_app"]

log = logging.getLogger(__name__)


RECEIVE_BATCH = 1 << 20
QUARANTINE = "quarantine"


class DiskUnknown(VmdrError):
    code = "VMDR-E0423"
    http_status = 404
    msg = "no target disk {disk!r} is registered on this master target"
    fix = "Register it first: PUT /v1/disks/{disk} with its datastore and path."


class DiskBusy(VmdrError):
    code = "VMDR-E0424"
    http_status = 409
    msg = "disk {disk!r} is busy: {detail}"
    fix = "Wait for the running transfer to end (or its sender to be stopped) and retry."


class BadId(VmdrError):
    code = "VMDR-E0425"
    http_status = 400
    msg = "{what} {value!r} is not a valid id"
    fix = "Use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit."


def check_id(what: str, value: str) -> str:
    if not is_id(value):
        raise BadId(what=what, value=value)
    return value


class _ClosingStream(StreamingResponse):
    """A streaming response that closes its generator when the response ends,
    a client that went away included. Starlette leaves a sync generator to the
    garbage collector, and until then a digest stream's hashing worker would
    keep running and the disk stay open."""

    def __init__(self, content: Generator[bytes, None, None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._generator = content

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await run_in_threadpool(_close_generator, self._generator)


def _close_generator(generator: Generator[bytes, None, None]) -> None:
    # A disconnect cancels the response while a thread may still be inside
    # next(): wait for it (one digest segment at most) before closing.
    for _ in range(200):
        try:
            generator.close()
            return
        except ValueError:  # generator already executing
            time.sleep(0.05)
    log.warning("a digest stream could not be closed; it ends when collected")


@dataclass
class MasterTargetSettings:
    datastores: DatastoreRoots
    retention: RetentionStore
    state_dir: Path
    # The configuration server's public key: what it assigned is written,
    # nothing else (``transport.grants``).
    grants: GrantVerifier
    # A change set whose sender sends nothing for this long is closed (its
    # disk lock freed; the sender resumes from the last ack).
    stream_idle: float = 60.0
    # Where the disks attached to this appliance's VM appear, and how long
    # one may take to appear after the attach.
    devices: DeviceFolder = field(default_factory=DeviceFolder)
    device_wait: float = 60.0


@dataclass
class _Disk:
    disk_id: str
    where: Where
    grant_iat: int = 0  # issue time of the grant it was registered with
    lock: threading.Lock = field(default_factory=threading.Lock)


class MasterTarget:
    """State of the service: registered disks, their journals and sessions."""

    def __init__(self, settings: MasterTargetSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.targets = Targets(settings.datastores, settings.devices, settings.device_wait)
        self.disks_dir = settings.state_dir / "disks"
        self.disks_dir.mkdir(parents=True, exist_ok=True)
        self._disks: dict[str, _Disk] = {}
        self._lock = threading.Lock()
        self._materialising: list[Where] = []  # disks a materialise is writing
        self._spent: dict[str, int] = {}  # materialise grants used, until they expire
        self.received = Counter(
            "vmdr_mt_bytes_written", "bytes written to target disks", registry=registry
        )
        self.rejected = Counter(
            "vmdr_mt_streams_rejected", "change sets refused or broken", ["code"], registry=registry
        )
        self.points_cut = Counter("vmdr_mt_points", "recovery points cut", registry=registry)
        self.retention_used = Gauge(
            "vmdr_mt_retention_used_bytes", "bytes used by retention journals", registry=registry
        )
        # Disk records that no longer hold (unreadable, or a path that now
        # leads outside its datastore): moved aside and reported, so that one
        # bad record does not stop the master target serving the others.
        self.quarantined: dict[str, str] = {}
        for record in sorted(self.disks_dir.glob("*.json")):
            try:
                data = json.loads(record.read_text())
                check_id("disk", record.stem)
                where = self.targets.resolve(data)
            except (OSError, ValueError, KeyError, TypeError, VmdrError) as exc:
                self._quarantine(record, exc)
                continue
            self._disks[record.stem] = _Disk(record.stem, where, int(data.get("grant_iat", 0)))
        for record in sorted((self.disks_dir / QUARANTINE).glob("*.json")):
            self.quarantined.setdefault(record.stem, "quarantined at an earlier start")

    def _quarantine(self, record: Path, exc: Exception) -> None:
        reason = exc.to_dict()["message"] if isinstance(exc, VmdrError) else repr(exc)
        folder = self.disks_dir / QUARANTINE
        folder.mkdir(exist_ok=True)
        os.replace(record, folder / record.name)
        self.quarantined[record.stem] = reason
        log.error("disk record %s quarantined (%s): %s", record.name, folder, reason)

    # -- disks ---------------------------------------------------------------
    def register(self, disk_id: str, spec: DiskSpec) -> dict[str, Any]:
        check_id("disk", disk_id)
        names = {"disk": disk_id, **spec.target_names()}
        known = self._disks.get(disk_id)
        # Opening a registered disk again (a sender's retry) needs its grant,
        # not a fresh one: an initial sync may outlast a grant's validity.
        # Compared by name: nothing on disk is looked at before the grant.
        again = known is not None and self.targets.names(known.where) == self.targets.names(spec)
        claims = self.settings.grants.check(
            spec.grant, REPLICATE, f"disk {disk_id!r}", names, expired_ok=again
        )
        self._refuse_replay(disk_id, claims["iat"], known)
        self.settings.retention.check_ready()
        where = self.targets.resolve(spec)
        self.targets.wait_for(where)  # a hot-added disk appears in a moment; not under the lock
        with self._lock:
            other = self._user_of(where, but=disk_id)
            if other:
                raise DiskBusy(disk=disk_id, detail=f"{where} is already {other}")
            self.targets.prepare(where, spec.size, spec.create)
            record = {**self.targets.record(where), "grant_iat": claims["iat"]}
            write_atomically(self.disks_dir / f"{disk_id}.json", json.dumps(record).encode())
            self.quarantined.pop(disk_id, None)
            self._disks[disk_id] = _Disk(disk_id, where, claims["iat"])
        return self.describe(disk_id)

    def _refuse_replay(self, disk_id: str, issued: int, known: _Disk | None) -> None:
        """A grant older than the one the disk holds, or than the one it held
        when it was forgotten, is a replay: after a failback the file is the
        production VM's disk again, and an old grant must not reopen it."""
        if known is not None:
            replay = issued < known.grant_iat  # the same grant again is a retry
        else:
            released = self.disks_dir / f"{disk_id}.released"
            replay = released.exists() and issued <= json.loads(released.read_text())["grant_iat"]
        if replay:
            raise GrantRefused(
                what=f"disk {disk_id!r}",
                detail="the grant is older than the disk's last one (a replay); the "
                "configuration server issues a new one when it assigns the disk again",
            )

    def _user_of(self, where: Where, but: str | None = None) -> str | None:
        """Who writes ``where`` now: a registered disk or a materialise."""
        if any(self.targets.same(where, m) for m in self._materialising):
            return "being materialised into"
        for d in self._disks.values():
            if self.targets.same(d.where, where) and d.disk_id != but:
                return f"disk {d.disk_id!r}"
        return None

    def disk(self, disk_id: str) -> _Disk:
        check_id("disk", disk_id)
        try:
            return self._disks[disk_id]
        except KeyError:
            raise DiskUnknown(disk=disk_id) from None

    def session_path(self, disk_id: str) -> Path:
        return self.disks_dir / f"{disk_id}.session"

    def describe(self, disk_id: str) -> dict[str, Any]:
        disk = self.disk(disk_id)
        session = load_session(self.session_path(disk_id))
        points = self.settings.retention.disk(disk_id).points()
        return {
            "id": disk_id,
            **self.targets.record(disk.where),
            "size": self.targets.size(disk.where),
            "session": session.to_dict() if session else None,
            "points": len(points),
            "latest_point": _point(points[-1]) if points else None,
            "busy": disk.lock.locked(),
        }

    def forget(self, disk_id: str) -> dict[str, Any]:
        """Stop keeping the disk: its record, open change set and journal go;
        the disk file itself stays where it is."""
        disk = self.disk(disk_id)
        if not disk.lock.acquire(blocking=False):
            raise DiskBusy(disk=disk_id, detail="a change set is being received")
        try:
            with self._lock:
                # Remember the last grant's time first: its replay is refused.
                released = json.dumps({"grant_iat": disk.grant_iat}).encode()
                write_atomically(self.disks_dir / f"{disk_id}.released", released)
                self.settings.retention.disk(disk_id).drop()
                self.session_path(disk_id).unlink(missing_ok=True)
                (self.disks_dir / f"{disk_id}.json").unlink(missing_ok=True)
                del self._disks[disk_id]
        finally:
            disk.lock.release()
        return {"id": disk_id, "forgotten": True, "file_kept": str(disk.where)}

    def open_target(self, disk: _Disk) -> Backend:
        return self.targets.open(disk.where)

    # -- change sets ---------------------------------------------------------
    def committed(self, disk_id: str, changeset: str) -> RecoveryPoint | None:
        for point in self.settings.retention.disk(disk_id).points():
            if point.changeset_id == changeset:
                return point
        return None

    async def receive(self, disk_id: str, changeset: str, request: Request) -> dict[str, Any]:
        disk = self.disk(disk_id)
        check_id("change set", changeset)
        if not disk.lock.acquire(blocking=False):
            raise DiskBusy(disk=disk_id, detail="another change set is being received")
        rx = _Receiver(self, disk, changeset)
        try:
            done = self.committed(disk_id, changeset)
            if done is not None:  # sent again after a lost answer: already applied
                return {"acked": None, "point": _point(done), "again": True}
            self.settings.retention.check_ready()
            pending: list[bytes] = []
            size = 0
            async for chunk in body_chunks(request, self.settings.stream_idle):
                # Decoding (checksums, zstd) and writing run off the event loop,
                # in batches of about a MiB: one thread hop per batch.
                pending.append(chunk)
                size += len(chunk)
                if size >= RECEIVE_BATCH:
                    await run_in_threadpool(rx.feed, b"".join(pending))
                    pending, size = [], 0
            if pending:
                await run_in_threadpool(rx.feed, b"".join(pending))
            answer = await run_in_threadpool(rx.finish)
            self.received.inc(answer.pop("written"))
            self.points_cut.inc()
            return answer
        except VmdrError as exc:
            self.rejected.labels(exc.code).inc()
            log.warning("disk %s change set %s refused: %s", disk_id, changeset, exc.message)
            raise
        finally:
            await run_in_threadpool(rx.close)
            disk.lock.release()

    def digests(self, disk_id: str, req: DigestRequest) -> StreamingResponse:
        disk = self.disk(disk_id)
        check_block_size(req.block_size)
        self.settings.retention.check_ready()
        target = self.open_target(disk)
        current = target.size()
        if current > req.size:  # refused before the stream starts: a clean error
            target.close()
            raise TargetTooLarge(url=target.url, target_size=current, source_size=req.size)

        def stream() -> Generator[bytes, None, None]:
            encoder = frames.Encoder()
            try:
                # In a worker process where worth it: it hashes the opened file
                # mapped (its descriptor is handed over, the path not reopened).
                # A larger source's extra blocks are holes here: the change
                # set's DiskInfo grows the disk, a read never does.
                with ExitStack() as stack:
                    segments = digests(target, req.block_size, stack,
                                       start_block=req.start_block, size=req.size)  # fmt: skip
                    for seg in segments:
                        yield b"".join(encoder.encode(seg))
                yield b"".join(encoder.encode(frames.End()))
            finally:
                target.close()

        return _ClosingStream(stream(), media_type="application/octet-stream")

    def materialise(self, disk_id: str, req: MaterialiseRequest) -> dict[str, Any]:
        disk = self.disk(disk_id)
        names = {"disk": disk_id, "point": req.point, **req.target_names()}
        what = f"materialise of {disk_id!r}"
        claims = self.settings.grants.check(req.grant, MATERIALISE, what, names)
        self._spend(str(req.grant), claims["exp"], what)
        journal = self.settings.retention.disk(disk_id)
        point = journal.find(req.point)
        where = self.targets.resolve(req)
        # The disk written is locked for the copy: never a replica (this one
        # or another's), never a second materialise at once.
        with self._lock:
            user = self._user_of(where)
            if user:
                raise DiskBusy(disk=disk_id, detail=f"cannot materialise into {where}: {user}")
            self._materialising.append(where)
        started = time.monotonic()
        try:
            # Hold the disk's lock: no change set lands while the copy is made.
            with disk.lock, self.open_target(disk) as current:
                size = current.size()
                with self.targets.open_sized(where, size, create=True) as out:
                    counters = journal.materialise(current, point, out)
        finally:
            with self._lock:
                self._materialising.remove(where)
        return {
            "point": _point(point),
            **self.targets.record(where),
            "seconds": round(time.monotonic() - started, 3),
            "counters": counters.to_dict() if hasattr(counters, "to_dict") else None,
        }

    def _spend(self, grant: str, expires: int, what: str) -> None:
        """A materialise grant serves once: replayed, it would write the
        drill VM's disk again under a running VM."""
        now = time.time()
        with self._lock:
            self._spent = {g: e for g, e in self._spent.items() if e >= now}
            if grant in self._spent:
                raise GrantRefused(what=what, detail="the grant was used already")
            self._spent[grant] = expires


class _Receiver:
    """One change set's stream: decoded and applied in worker threads, one
    chunk at a time (see ``roles.sender`` for the stream's shape)."""

    def __init__(self, mt: MasterTarget, disk: _Disk, changeset: str) -> None:
        self.mt, self.disk, self.changeset = mt, disk, changeset
        self.decoder = frames.FrameDecoder()
        self.applier: ChangeSetApplier | None = None
        self.target: Backend | None = None
        self.point: RecoveryPoint | None = None

    def _refuse(self, detail: str) -> SessionError:
        return SessionError(changeset=self.changeset, disk=self.disk.disk_id, detail=detail)

    def feed(self, chunk: bytes) -> None:
        for msg in self.decoder.feed(chunk):
            if isinstance(msg, frames.Control):
                self._control(msg)
            elif isinstance(msg, frames.End):
                continue
            elif self.applier is None or self.point is not None:
                raise self._refuse("data outside begin ... cut")
            else:
                self.applier.apply(msg)

    def _control(self, msg: frames.Control) -> None:
        disk_id = self.disk.disk_id
        try:
            if msg.op == "begin":
                begin = BeginControl.model_validate(msg.data)
            elif msg.op == "cut":
                cut = CutControl.model_validate(msg.data)
            else:
                raise self._refuse(f"unknown control {msg.op!r}")
        except ValidationError as exc:
            raise self._refuse(f"control frame: {validation_summary(exc.errors())}") from None
        if msg.op == "begin":
            if self.applier is not None:
                raise self._refuse("begin sent twice")
            self.target = self.mt.open_target(self.disk)
            self.applier = ChangeSetApplier(
                disk_id,
                self.target,
                self.mt.settings.retention.disk(disk_id),
                self.mt.session_path(disk_id),
                self.changeset,
                initial=begin.initial,
                resume_from=begin.resume_from,
            )
        else:
            if self.applier is None:
                raise self._refuse("cut before begin")
            self.point = self.applier.cut(cut.time, cut.tag, cut.kind)

    def finish(self) -> dict[str, Any]:
        self.decoder.finish()
        if self.point is None or self.applier is None:
            raise self._refuse("the stream ended without a cut")
        return {
            "acked": self.applier.acked,
            "point": _point(self.point),
            "resumed_from": self.applier.resume_from,
            "written": self.applier.counters.written,
        }

    def close(self) -> None:
        try:
            if self.applier is not None and not self.applier.done:
                # Keep what arrived: the sender resumes from this ack.
                self.applier.checkpoint()
        except VmdrError as exc:  # the target itself failed: the sender will resend
            log.warning("could not checkpoint %s: %s", self.disk.disk_id, exc.message)
        finally:
            if self.target is not None:
                self.target.close()


def _point(point: RecoveryPoint) -> dict[str, Any]:
    return {
        "seq": point.seq,
        "changeset": point.changeset_id,
        "time": point.time,
        "tag": point.tag,
        "kind": point.kind,
    }


def build_app(settings: MasterTargetSettings, tokens: TokenStore) -> FastAPI:
    registry = CollectorRegistry()
    app = create_app("master-target", tokens, registry)
    mt = MasterTarget(settings, registry)
    app.state.master_target = mt

    @app.get("/v1/capabilities")
    def capabilities() -> dict[str, Any]:
        return {"wire_version": frames.VERSION, "compression": ["zstd"]}

    @app.put("/v1/disks/{disk_id}")
    def put_disk(disk_id: str, spec: DiskSpec) -> dict[str, Any]:
        return mt.register(disk_id, spec)

    @app.get("/v1/disks/{disk_id}")
    def get_disk(disk_id: str) -> dict[str, Any]:
        return mt.describe(disk_id)

    @app.delete("/v1/disks/{disk_id}")
    def delete_disk(disk_id: str) -> dict[str, Any]:
        return mt.forget(disk_id)

    @app.get("/v1/disks/{disk_id}/points")
    def get_points(disk_id: str) -> list[dict[str, Any]]:
        mt.disk(disk_id)
        return [_point(p) for p in settings.retention.disk(disk_id).points()]

    @app.post("/v1/disks/{disk_id}/digests")
    def post_digests(disk_id: str, req: DigestRequest) -> StreamingResponse:
        return mt.digests(disk_id, req)

    @app.post("/v1/disks/{disk_id}/changesets/{changeset}")
    async def post_changeset(disk_id: str, changeset: str, request: Request) -> dict[str, Any]:
        return await mt.receive(disk_id, changeset, request)

    @app.post("/v1/disks/{disk_id}/materialise")
    def post_materialise(disk_id: str, req: MaterialiseRequest) -> dict[str, Any]:
        return mt.materialise(disk_id, req)

    @app.get("/v1/retention")
    def get_retention() -> dict[str, Any]:
        usage = settings.retention.usage()
        mt.retention_used.set(usage["used_bytes"])
        return dict(usage)

    @app.get("/v1/quarantine")
    def get_quarantine() -> dict[str, str]:
        """Disk records set aside at start (disk id → why); registering the
        disk again replaces its record."""
        return dict(mt.quarantined)

    return app
