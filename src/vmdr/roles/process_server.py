"""The process server: reads source disks, finds what changed, sends it to
the master target over TLS, caches when the master target is unreachable.

REST (token auth, see ``transport.service``)::

    POST   /v1/replications                 {id, source, device | datastore+path, initial,
                                             interval, grant}: only with the configuration server's
                                             grant for that source and target
    GET    /v1/replications                 all, with phase, lag, outbox, error
    GET    /v1/replications/{id}
    POST   /v1/replications/{id}/dirty      {"extents": [[offset, length], ...]}: the source's feed
    POST   /v1/replications/{id}/points     {"tag": str|null, "kind": "crash"|"app", "wait": s}
    POST   /v1/replications/{id}/proof      compare the source with the master target's disk
    GET    /v1/replications/{id}/proof      ... its progress and verdict (``roles.proof``)
    DELETE /v1/replications/{id}            stop; ?forget_target=true: the master target
                                            forgets the disk's journal too (file stays)

Replications survive a restart: their spec and progress live in the state
folder and their change sets in the cache folder.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Gauge

from vmdr.blocks.hashing import check_block_size
from vmdr.blocks.urls import open_backend
from vmdr.model.errors import VmdrError
from vmdr.roles.clients import MasterTargetClient
from vmdr.roles.contracts import DirtyFeed, NewReplication, PointRequest
from vmdr.roles.proof import Proof, ProofUnknown
from vmdr.roles.replication import Replication, ReplicationSpec
from vmdr.roles.sender import RateLimiter
from vmdr.transport.auth import TokenStore
from vmdr.transport.grants import REPLICATE, GrantVerifier, replication_names
from vmdr.transport.service import create_app

__all__ = ["ProcessServer", "ProcessServerSettings", "build_app"]

log = logging.getLogger(__name__)


class ReplicationUnknown(VmdrError):
    code = "VMDR-E0431"
    http_status = 404
    msg = "no replication {id!r} on this process server"
    fix = "List them with GET /v1/replications."


class ReplicationExists(VmdrError):
    code = "VMDR-E0432"
    http_status = 409
    msg = "replication {id!r} already exists (source {source})"
    fix = "Use another id, or stop the existing one first (DELETE /v1/replications/{id})."


@dataclass
class ProcessServerSettings:
    state_dir: Path
    cache_dir: Path
    master_target_url: str
    master_target_ca: Path
    master_target_token: str
    # The configuration server's public key: a replication is accepted only
    # with its grant for that source and target (``transport.grants``).
    grants: GrantVerifier
    bandwidth: int = 0  # bytes per second, 0 = no limit
    cache_limit: int | None = None
    compress: bool = True


class ProcessServer:
    def __init__(self, settings: ProcessServerSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.repl_dir = settings.state_dir / "replications"
        self.repl_dir.mkdir(parents=True, exist_ok=True)
        self.limiter = RateLimiter(settings.bandwidth)
        self._lock = threading.Lock()
        self._repls: dict[str, Replication] = {}
        self._proofs: dict[str, Proof] = {}  # the last proof of each replication
        self.lag = Gauge(
            "vmdr_ps_rpo_lag_seconds",
            "seconds since the newest delivered point",
            ["replication"],
            registry=registry,
        )
        self.cached = Gauge(
            "vmdr_ps_outbox_bytes",
            "bytes of change sets waiting in the cache",
            ["replication"],
            registry=registry,
        )
        self.sent = Gauge(
            "vmdr_ps_sent_bytes",
            "bytes sent to the master target",
            ["replication"],
            registry=registry,
        )
        self._compress: bool | None = None
        for path in sorted(self.repl_dir.glob("*.json")):
            spec = ReplicationSpec(**json.loads(path.read_text())["spec"])
            self._repls[spec.id] = self._make(spec)
            self._repls[spec.id].start()

    def client(self) -> MasterTargetClient:
        s = self.settings
        return MasterTargetClient(
            "master target",
            s.master_target_url,
            s.master_target_ca,
            s.master_target_token,
            timeout=120.0,
        )

    def master_target_status(self) -> dict[str, Any]:
        """Whether the master target answers now (a short, authenticated probe):
        reprotect refuses while the process server cannot reach it."""
        s = self.settings
        try:
            with MasterTargetClient("master target", s.master_target_url, s.master_target_ca,
                                    s.master_target_token, timeout=5.0) as client:  # fmt: skip
                client.capabilities()
        except VmdrError as exc:
            return {"url": s.master_target_url, "reachable": False, "detail": exc.code}
        return {"url": s.master_target_url, "reachable": True}

    def compress(self) -> bool:
        """Compression is used when both sides support it (asked once)."""
        if self._compress is None:
            with self.client() as client:
                caps = client.capabilities()
            self._compress = self.settings.compress and "zstd" in caps.get("compression", [])
        return self._compress

    def _make(self, spec: ReplicationSpec) -> Replication:
        return Replication(
            spec,
            self.repl_dir,
            self.settings.cache_dir,
            self.client,
            self.limiter,
            cache_limit=self.settings.cache_limit,
            compress=self.compress,
        )

    def create(self, req: NewReplication) -> dict[str, Any]:
        # Checked before anything is opened: a source the configuration server
        # did not assign is refused the same way whether or not it exists.
        names = replication_names(req.id, req.source, req.target_names())
        self.settings.grants.check(req.grant, REPLICATE, f"replication {req.id!r}", names)
        check_block_size(req.block_size)
        with self._lock:
            if req.id in self._repls:
                raise ReplicationExists(id=req.id, source=self._repls[req.id].spec.source)
            with open_backend(req.source, "r"):  # refuse a source we cannot read, now
                pass
            spec = ReplicationSpec(
                req.id,
                req.source,
                req.datastore,
                req.path,
                req.initial,
                req.interval,
                req.block_size,
                req.grant,
                req.device,
            )
            repl = self._make(spec)
            self._repls[req.id] = repl
        repl.start()
        return repl.status()

    def get(self, repl_id: str) -> Replication:
        try:
            return self._repls[repl_id]
        except KeyError:
            raise ReplicationUnknown(id=repl_id) from None

    def status(self, repl_id: str) -> dict[str, Any]:
        status = self.get(repl_id).status()
        self.lag.labels(repl_id).set(status["lag_seconds"] or 0)
        self.cached.labels(repl_id).set(status["outbox"]["bytes"])
        self.sent.labels(repl_id).set(status["sent_bytes"])
        return status

    def delete(self, repl_id: str, forget_target: bool) -> dict[str, Any]:
        """Stop and forget a replication. Its undelivered change sets are
        dropped with it (they belong to no replication any more); with
        ``forget_target`` the master target also forgets the disk's journal."""
        with self._lock:
            repl = self.get(repl_id)
            repl.stop()
            dropped = len(repl.outbox.pending())
            del self._repls[repl_id]
            proof = self._proofs.pop(repl_id, None)
            if proof is not None:
                proof.cancel()
            for suffix in (".json", ".dmap", ".dmap.taken", ".dmap.lock"):
                (self.repl_dir / f"{repl_id}{suffix}").unlink(missing_ok=True)
            shutil.rmtree(repl.outbox.folder, ignore_errors=True)
        answer: dict[str, Any] = {"id": repl_id, "stopped": True, "dropped_change_sets": dropped}
        if forget_target:
            with self.client() as client:
                answer["target"] = client.forget(repl.spec.disk)
        return answer

    def prove(self, repl_id: str) -> dict[str, Any]:
        """Start a proof of the replication. One still running is cancelled,
        never answered: it may have compared blocks a later sync changed."""
        repl = self.get(repl_id)
        with self._lock:
            old = self._proofs.get(repl_id)
            if old is not None:
                old.cancel()
            proof = Proof(repl.spec, self.client).start()
            self._proofs[repl_id] = proof
        return proof.status()

    def proof(self, repl_id: str) -> dict[str, Any]:
        try:
            return self._proofs[repl_id].status()
        except KeyError:
            raise ProofUnknown(id=repl_id) from None

    def all(self) -> list[dict[str, Any]]:
        return [self.status(i) for i in sorted(self._repls)]

    def close(self) -> None:
        for repl in list(self._repls.values()):
            repl.stop()


def build_app(settings: ProcessServerSettings, tokens: TokenStore) -> FastAPI:
    registry = CollectorRegistry()
    app = create_app("process-server", tokens, registry)
    ps = ProcessServer(settings, registry)
    app.state.process_server = ps
    app.router.on_shutdown.append(_closer(ps.close))

    @app.post("/v1/replications", status_code=201)
    def post_replication(req: NewReplication) -> dict[str, Any]:
        return ps.create(req)

    @app.get("/v1/replications")
    def list_replications() -> list[dict[str, Any]]:
        return ps.all()

    @app.get("/v1/replications/{repl_id}")
    def get_replication(repl_id: str) -> dict[str, Any]:
        return ps.status(repl_id)

    @app.post("/v1/replications/{repl_id}/dirty")
    def post_dirty(repl_id: str, feed: DirtyFeed) -> dict[str, Any]:
        ps.get(repl_id).mark_dirty([(int(o), int(n)) for o, n in feed.extents])
        return {"marked": len(feed.extents)}

    @app.post("/v1/replications/{repl_id}/points")
    def post_point(repl_id: str, req: PointRequest) -> dict[str, Any]:
        return ps.get(repl_id).request_point(req.tag, req.kind, req.wait)

    @app.post("/v1/replications/{repl_id}/proof", status_code=202)
    def post_proof(repl_id: str) -> dict[str, Any]:
        return ps.prove(repl_id)

    @app.get("/v1/replications/{repl_id}/proof")
    def get_proof(repl_id: str) -> dict[str, Any]:
        return ps.proof(repl_id)

    @app.delete("/v1/replications/{repl_id}")
    def delete_replication(repl_id: str, forget_target: bool = False) -> dict[str, Any]:
        return ps.delete(repl_id, forget_target)

    return app


def _closer(fn: Callable[[], None]) -> Callable[[], Any]:
    async def close() -> None:
        fn()

    return close
