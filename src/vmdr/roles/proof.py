"""The failback proof, computed where the bytes are: the process server
hashes its source (the cloud disk) while the master target streams the
digests of the disk it wrote (the VMDK attached to its VM), and the two are
compared block by block (``blocks.verify.Verify`` across the network). The
configuration server only reads the verdict and the two roots: it never
opens either disk.

A proof of a large disk takes minutes, so it runs in a thread of the process
server and is polled::

    POST /v1/replications/{id}/proof   start one (a running one is cancelled: it may
                                       have compared blocks a later sync changed), 202
    GET  /v1/replications/{id}/proof   {state: running|done|failed, done, total,
                                        result | error}

A change set landing during the proof can make it fail (differ); it never
makes two different disks look equal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from vmdr.blocks.urls import open_backend
from vmdr.blocks.verify import Verify
from vmdr.model.errors import VmdrError
from vmdr.roles.clients import MasterTargetClient
from vmdr.roles.contracts import DigestRequest
from vmdr.roles.replication import ReplicationSpec, digest_stream

__all__ = ["Proof", "ProofUnknown"]

log = logging.getLogger(__name__)


class ProofUnknown(VmdrError):
    code = "VMDR-E0433"
    http_status = 404
    msg = "no proof of replication {id!r} was started on this process server"
    fix = "Start one: POST /v1/replications/{id}/proof."


class TargetUnreadable(VmdrError):
    code = "VMDR-E0434"
    msg = "the master target cannot open the disk of replication {id!r}"
    fix = (
        "Check that the disk is still attached to the master target's VM (vCenter) and "
        "that the master target is running; then prove again (retry the failback)."
    )


class Proof:
    """One whole-disk comparison of a replication's source with its target."""

    def __init__(
        self, spec: ReplicationSpec, client_factory: Callable[[], MasterTargetClient]
    ) -> None:
        self.spec, self.client_factory = spec, client_factory
        self.state = "running"
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self._verify: Verify | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name=f"proof-{spec.id}", daemon=True)

    def start(self) -> Proof:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self.state == "running"

    def cancel(self) -> None:
        """Stop reading at the next chunk; the proof ends ``failed``."""
        self._cancelled = True
        if self._verify is not None:
            self._verify.cancel()

    def status(self) -> dict[str, Any]:
        counters = self._verify.counters if self._verify else None
        return {
            "id": self.spec.id,
            "state": self.state,
            "done": counters.done if counters else 0,
            "total": counters.total if counters else 0,
            "result": self.result,
            "error": self.error,
        }

    def _run(self) -> None:
        try:
            self.result = self._prove()
            self.state = "done"
        except VmdrError as exc:  # OperationCancelled included
            self.error, self.state = exc.to_dict(), "failed"
        except Exception as exc:  # the poller must learn it ended, whatever it was
            log.exception("proof of %s failed", self.spec.id)
            self.error, self.state = {"code": "VMDR-E0000", "message": repr(exc)}, "failed"

    def _prove(self) -> dict[str, Any]:
        spec, bs = self.spec, self.spec.block_size
        with self.client_factory() as client, open_backend(spec.source, "r") as source:
            size = source.size()
            target_size = client.disk(spec.disk).get("size")
            if target_size is None:
                raise TargetUnreadable(id=spec.id)
            # Digests over the larger of the two: a shorter side's tail reads
            # as holes, and the sizes are compared too.
            span = max(size, int(target_size))
            request = DigestRequest(block_size=bs, start_block=0, size=span)
            self._verify = Verify(source, None, block_size=bs)
            if self._cancelled:
                self._verify.cancel()
            with client.digests(spec.disk, request) as raw:
                result = self._verify.compare_with(digest_stream(raw), span)
        short = abs(size - int(target_size))
        return {
            "equal": result.equal and short == 0,
            "source": spec.source,
            "target": spec.target(),
            "source_size": size,
            "target_size": int(target_size),
            "source_root": result.root_a.hex(),
            "target_root": result.root_b.hex(),
            "differing_bytes": result.differing_bytes + (short if size > target_size else 0),
            "differences": [e.to_dict() for e in result.differences],
        }
