"""Worker leases: every worker process (``vmdr serve worker``, or the
configuration server's own) holds a row in ``workers`` and renews it every
``BEAT`` seconds. A worker whose lease is older than ``LEASE`` is dead: the
first live worker to notice claims it (one conditional UPDATE, so exactly one
wins) and hands its pending workflows back to their queues, where any worker
picks them up at their last finished step. Heartbeat every 5 s, lease 30 s:
a dead worker's jobs move on within 40 s.

A worker that finds its own lease claimed (it stalled longer than the lease,
a network partition from the database) stops at once rather than run a job
that another worker now runs too: its process exits, its supervisor
restarts it, and it starts clean with a new lease.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from vmdr.control.db.models import Worker

__all__ = ["BEAT", "LEASE", "WorkerLease", "recover_executor", "worker_id"]

log = logging.getLogger(__name__)
BEAT = 5.0
LEASE = 30.0
FENCED_EXIT = 75  # EX_TEMPFAIL: a supervisor restarts it


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def worker_id(state_dir: Path) -> str:
    """This worker's id, kept in its state folder: a restarted worker is the
    same executor and resumes its own workflows at once."""
    path = state_dir / "worker.id"
    if path.exists():
        return path.read_text().strip()
    ident = f"{socket.gethostname()}-{uuid.uuid4().hex[:12]}"
    from vmdr.blocks.durable import write_atomically

    write_atomically(path, ident.encode(), mode=0o644)
    return ident


def recover_executor(executor_id: str) -> int:
    """Hand a dead executor's pending workflows back to their queues."""
    from dbos import DBOS

    # The public recovery call of DBOS Transact (what its Conductor calls for
    # a dead executor): it re-enqueues the workflows, idempotently.
    handles = DBOS._recover_pending_workflows([executor_id])
    return len(handles)


class WorkerLease:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        worker_id: str,
        *,
        beat: float = BEAT,
        lease: float = LEASE,
        recover: Callable[[str], int] = recover_executor,
        fenced: Callable[[], None] | None = None,
    ) -> None:
        self.sessions, self.worker_id = sessions, worker_id
        self.beat, self.lease = beat, lease
        self.recover = recover
        self.fenced = fenced or (lambda: os._exit(FENCED_EXIT))
        self.stop = threading.Event()

    def start(self) -> None:
        with self.sessions.begin() as s:
            row = s.get(Worker, self.worker_id)
            if row is None:
                row = Worker(id=self.worker_id)
                s.add(row)
            row.host, row.pid, row.state = socket.gethostname(), os.getpid(), "alive"
            row.started_at = row.heartbeat_at = _now()
        threading.Thread(target=self._run, name="vmdr-lease", daemon=True).start()

    def _run(self) -> None:
        while not self.stop.wait(self.beat):
            try:
                self.renew()
                self.take_over()
            except Exception:  # the database is away: try again next beat
                log.warning("worker lease: database unreachable", exc_info=True)

    def renew(self) -> None:
        with self.sessions.begin() as s:
            done = s.execute(
                update(Worker)
                .where(Worker.id == self.worker_id, Worker.state == "alive")
                .values(heartbeat_at=_now())
            )
        if done.rowcount == 0:  # type: ignore[attr-defined]
            log.critical("worker %s: its lease was taken over; stopping", self.worker_id)
            self.fenced()

    def take_over(self) -> list[str]:
        """Claim every worker whose lease ran out; recover its workflows."""
        cutoff = _now() - dt.timedelta(seconds=self.lease)
        with self.sessions() as s:
            stale = list(
                s.scalars(
                    select(Worker.id).where(Worker.state == "alive", Worker.heartbeat_at < cutoff)
                )
            )
        claimed = []
        for worker in stale:
            with self.sessions.begin() as s:
                won = s.execute(
                    update(Worker)
                    .where(Worker.id == worker, Worker.state == "alive",
                           Worker.heartbeat_at < cutoff)
                    .values(state="dead", taken_over_by=self.worker_id)
                )  # fmt: skip
            if won.rowcount == 1:  # type: ignore[attr-defined]
                count = self.recover(worker)
                log.warning("worker %s is dead: %d workflow(s) handed back", worker, count)
                claimed.append(worker)
        return claimed

    def close(self) -> None:
        """A clean stop: the lease ends now, not in ``LEASE`` seconds, so
        another worker takes over at its next beat whatever this one leaves
        unfinished (or this one, restarted, resumes it first)."""
        self.stop.set()
        epoch = dt.datetime.fromtimestamp(0, dt.UTC)
        with self.sessions.begin() as s:
            s.execute(update(Worker).where(Worker.id == self.worker_id).values(heartbeat_at=epoch))
