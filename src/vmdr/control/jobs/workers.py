"""Worker leases: every worker process (``vmdr serve worker``, or the
configuration server's own) holds a row in ``workers`` and renews it every
``BEAT`` seconds. A worker whose lease is older than ``LEASE`` is dead: the
first live worker to notice claims it (one conditional UPDATE, so exactly one
wins) and hands its pending workflows back to their queues, where any worker
picks them up at their last finished step. Heartbeat every 5 s, lease 30 s:
a dead worker's jobs move on within 40 s.

A worker that finds its own lease claimed (it stalled longer than the
lease), or that could not renew it for almost a lease (the database is out
of its reach), stops at once rather than run a step that another worker may
now run too: its process exits, its supervisor restarts it, and it starts
clean with a new lease. Lease ages are measured by PostgreSQL's clock, which
every host shares, not by each host's own.

With SQLite the configuration server is the only worker there can be
(``vmdr serve worker`` refuses SQLite), so nobody could claim it: a renewal
that fails (a write lock held long under load) is retried, never a reason
to stop. The configuration server used to exit there, and took the API down
with it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from vmdr.control.db.models import Worker
from vmdr.model.errors import VmdrError
from vmdr.model.procfs import running

__all__ = ["BEAT", "LEASE", "WorkerIdInUse", "WorkerLease", "recover_executor", "worker_id"]

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


def _restart_of(row: Worker, host: str, pid: int) -> bool:
    """Is this process the worker of ``row`` restarted (same host, the old
    process gone), rather than a second process with the same id?"""
    if (row.host, row.pid) == (host, pid):
        return True
    # A zombie counts as gone: a killed worker whose parent never collects
    # it (the first process of a container often does not) is one.
    return row.host == host and not running(row.pid)


def recover_executor(executor_id: str) -> int:
    """Hand a dead executor's pending workflows back to their queues."""
    from dbos import DBOS

    # The public recovery call of DBOS Transact (what its Conductor calls for
    # a dead executor): it re-enqueues the workflows, idempotently.
    handles = DBOS._recover_pending_workflows([executor_id])
    return len(handles)


class WorkerIdInUse(VmdrError):
    code = "VMDR-E0508"
    msg = "worker id {worker} is in use by {host} (pid {pid}), whose lease is current"
    fix = (
        "Give each worker its own state folder (its id is <state>/worker.id), or stop the "
        "other one first."
    )


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
        self.renewed = time.monotonic()
        bind = sessions.kw["bind"]
        # Lease ages by the database's clock where it has one that every host
        # shares (PostgreSQL); SQLite has one process, hence one clock.
        self._db_clock = bind is not None and bind.dialect.name == "postgresql"
        # Only where other workers share the database may one take us over.
        self._shared = bind is None or bind.dialect.name != "sqlite"

    def _now(self) -> Any:
        return func.now() if self._db_clock else _now()

    def _cutoff(self, seconds: float) -> Any:
        return self._now() - dt.timedelta(seconds=seconds)

    def start(self) -> None:
        host, pid = socket.gethostname(), os.getpid()
        with self.sessions.begin() as s:
            row = s.get(Worker, self.worker_id, with_for_update=True)
            if row is None:
                row = Worker(id=self.worker_id)
                s.add(row)
            elif row.state == "alive" and not _restart_of(row, host, pid):
                current = s.scalar(
                    select(Worker.id).where(
                        Worker.id == self.worker_id, Worker.heartbeat_at >= self._cutoff(self.lease)
                    )
                )
                if current is not None:
                    raise WorkerIdInUse(worker=self.worker_id, host=row.host, pid=row.pid)
            row.host, row.pid, row.state, row.taken_over_by = host, pid, "alive", None
            row.started_at = _now()
            row.heartbeat_at = self._now()
        self.renewed = time.monotonic()
        threading.Thread(target=self._run, name="vmdr-lease", daemon=True).start()

    def _run(self) -> None:
        while not self.stop.wait(self.beat):
            try:
                self.renew()
            except Exception:  # the database is away
                log.warning("worker lease: database unreachable", exc_info=True)
                late = time.monotonic() - self.renewed > self.lease - 2 * self.beat
                if late and self._shared:
                    # Others may claim us any moment now, and run our jobs:
                    # stop before they do, rather than run a step twice.
                    log.critical("worker %s: lease not renewed in time; stopping", self.worker_id)
                    self.fenced()
                continue
            try:
                self.take_over()
            except Exception:
                log.warning("worker lease: take-over failed; next beat", exc_info=True)

    def renew(self) -> None:
        with self.sessions.begin() as s:
            done = s.execute(
                update(Worker)
                .where(Worker.id == self.worker_id, Worker.state == "alive")
                .values(heartbeat_at=self._now())
            )
        if done.rowcount == 0:  # type: ignore[attr-defined]
            log.critical("worker %s: its lease was taken over; stopping", self.worker_id)
            self.fenced()
            return
        self.renewed = time.monotonic()

    def take_over(self) -> list[str]:
        """Claim every worker whose lease ran out (one conditional UPDATE: of
        two live workers, one wins), then hand back the workflows of every
        dead worker, again at each beat until none is left: a recovery that
        failed half-way, or a stalled worker that ran again before it noticed
        its lease was gone, leaves none behind."""
        cutoff = self._cutoff(self.lease)
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
                claimed.append(worker)
        with self.sessions() as s:
            dead = list(s.execute(select(Worker.id, Worker.heartbeat_at).where(
                Worker.state == "dead")).all())  # fmt: skip
            settled = self._cutoff(3 * self.lease)
            long_gone = set(s.scalars(select(Worker.id).where(
                Worker.state == "dead", Worker.heartbeat_at < settled)))  # fmt: skip
        for worker, _ in dead:
            count = self.recover(worker)
            if count:
                log.warning("worker %s is dead: %d workflow(s) handed back", worker, count)
            elif worker in long_gone:  # nothing left, and it cannot run any more
                with self.sessions.begin() as s:
                    s.execute(update(Worker).where(Worker.id == worker, Worker.state == "dead")
                              .values(state="recovered"))  # fmt: skip
        return claimed

    def close(self) -> None:
        """A clean stop, once this process runs no more steps: the lease ends
        now, not in ``LEASE`` seconds, so that another worker takes over at
        its next beat whatever was left unfinished (or this one, restarted,
        resumes it first)."""
        self.stop.set()
        epoch = dt.datetime.fromtimestamp(0, dt.UTC)
        with self.sessions.begin() as s:
            s.execute(update(Worker).where(Worker.id == self.worker_id).values(heartbeat_at=epoch))
