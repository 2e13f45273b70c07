"""Typed clients of the process server and the master target: each call
sends the model the server validates (``roles/contracts.py``) and names what
it does, so that no caller formats a path or a request body by hand.

They are ``ServiceClient``s (TLS with the role's CA, a bearer token, errors
with the server's code), so a stream (a change set, digests) still goes
through ``upload`` and ``download``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from vmdr.model.ids import ReplicationId
from vmdr.roles.contracts import (
    DigestRequest,
    DiskSpec,
    MaterialiseRequest,
    NewReplication,
    PointRequest,
    ReplicationStatus,
)
from vmdr.transport.client import RemoteError, ServiceClient

__all__ = ["MasterTargetClient", "ProcessServerClient"]

Ident = ReplicationId | str


def _body(model: Any) -> dict[str, Any]:
    body: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True)
    return body


class ProcessServerClient(ServiceClient):
    def replications(self) -> list[ReplicationStatus]:
        return [ReplicationStatus.model_validate(r) for r in self.get("/v1/replications")]

    def replication(self, rid: Ident) -> ReplicationStatus:
        return ReplicationStatus.model_validate(self.get(f"/v1/replications/{rid}"))

    def start(self, spec: NewReplication) -> dict[str, Any]:
        answer: dict[str, Any] = self.post("/v1/replications", _body(spec))
        return answer

    def mark_dirty(self, rid: Ident, extents: list[tuple[int, int]]) -> None:
        """Extents the source wrote since the last cycle (a cloud VM's dirty map)."""
        self.post(f"/v1/replications/{rid}/dirty", {"extents": [list(e) for e in extents]})

    def point(self, rid: Ident, request: PointRequest) -> dict[str, Any]:
        """Cut a recovery point now; with ``wait``, until the master target applied it."""
        answer: dict[str, Any] = self.post(f"/v1/replications/{rid}/points", _body(request))
        return answer

    def prove(self, rid: Ident) -> dict[str, Any]:
        """Start a whole-disk proof of source = target (``roles.proof``)."""
        answer: dict[str, Any] = self.post(f"/v1/replications/{rid}/proof")
        return answer

    def proof(self, rid: Ident) -> dict[str, Any]:
        """The proof's progress, and its verdict once done."""
        answer: dict[str, Any] = self.get(f"/v1/replications/{rid}/proof")
        return answer

    def stop(self, rid: Ident, *, forget_target: bool = False) -> bool:
        """Stop a replication (and have the master target forget its journal);
        False if the process server did not know it."""
        try:
            self.delete(f"/v1/replications/{rid}",
                        params={"forget_target": str(forget_target).lower()})  # fmt: skip
        except RemoteError as exc:
            if exc.status == 404:
                return False
            raise
        return True


class MasterTargetClient(ServiceClient):
    def capabilities(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.get("/v1/capabilities")
        return answer

    def open_disk(self, disk: str, spec: DiskSpec) -> dict[str, Any]:
        """Where a disk is written (created with ``spec.create``)."""
        answer: dict[str, Any] = self.put(f"/v1/disks/{disk}", _body(spec))
        return answer

    def disk(self, disk: str) -> dict[str, Any]:
        """Its points and the change set being received, if one is."""
        answer: dict[str, Any] = self.get(f"/v1/disks/{disk}")
        return answer

    def forget(self, disk: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.delete(f"/v1/disks/{disk}")
        return answer

    def digests(self, disk: str, request: DigestRequest) -> AbstractContextManager[Iterator[bytes]]:
        """The target's block digests, streamed."""
        return self.download(f"/v1/disks/{disk}/digests", _body(request))

    def materialise(self, disk: Ident, request: MaterialiseRequest) -> dict[str, Any]:
        """Write the disk as at a recovery point into another disk file."""
        answer: dict[str, Any] = self.post(f"/v1/disks/{disk}/materialise", _body(request))
        return answer
