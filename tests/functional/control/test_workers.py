"""Worker leases on SQLite and PostgreSQL, with the engine's recovery
replaced by a recorder: a dead worker is claimed once and its workflows are
handed back at every beat until none is left; a worker that cannot renew
its lease stops before others may claim it; a worker id in use is refused."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from vmdr.control.db.engine import open_database, session_factory
from vmdr.control.db.models import Worker
from vmdr.control.jobs.workers import WorkerIdInUse, WorkerLease


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = open_database(database_url)
    yield session_factory(engine)
    engine.dispose()


def age(sessions: sessionmaker[Session], worker: str, seconds: float) -> None:
    """Make a worker's last heartbeat ``seconds`` old (by the database's clock)."""
    from sqlalchemy import func

    with sessions.begin() as s:
        postgres = s.get_bind().dialect.name == "postgresql"
        now = func.now() if postgres else dt.datetime.now(dt.UTC)
        s.execute(update(Worker).where(Worker.id == worker)
                  .values(heartbeat_at=now - dt.timedelta(seconds=seconds)))  # fmt: skip


def state(sessions: sessionmaker[Session], worker: str) -> tuple[str, str | None]:
    with sessions() as s:
        row = s.get(Worker, worker)
        assert row is not None
        return row.state, row.taken_over_by


def test_a_dead_worker_is_claimed_once_and_recovered_until_nothing_is_left(
    sessions: sessionmaker[Session],
) -> None:
    pending = {"doomed": [3, 1, 0, 0]}  # what each recovery call finds
    calls: list[tuple[str, str]] = []

    def recorder(name: str):  # type: ignore[no-untyped-def]
        def recover(worker: str) -> int:
            calls.append((name, worker))
            return pending[worker].pop(0) if pending[worker] else 0

        return recover

    doomed = WorkerLease(sessions, "doomed")
    a = WorkerLease(sessions, "a", recover=recorder("a"))
    b = WorkerLease(sessions, "b", recover=recorder("b"))
    for lease in (doomed, a, b):
        lease.start()
        lease.stop.set()  # beats by hand below
    age(sessions, "doomed", 31)
    assert a.take_over() == ["doomed"]
    assert b.take_over() == []  # already claimed: one winner
    assert state(sessions, "doomed") == ("dead", "a")
    a.take_over()
    # Each beat of every live worker hands back what is left (idempotent):
    # a recovery that failed half-way, or a worker that ran again, is redone.
    assert calls == [("a", "doomed"), ("b", "doomed"), ("a", "doomed")]
    assert pending["doomed"] == [0]
    assert state(sessions, "doomed")[0] == "dead"  # nothing left, but not gone long enough
    age(sessions, "doomed", 91)
    a.take_over()
    assert state(sessions, "doomed")[0] == "recovered"
    calls.clear()
    b.take_over()
    assert calls == []  # settled: no more recovery calls


def test_a_worker_that_cannot_renew_its_lease_stops_before_others_may_claim_it_if_any_can(
    sessions: sessionmaker[Session],
) -> None:
    stopped = threading.Event()
    lease = WorkerLease(sessions, "cut-off", beat=0.05, lease=0.5, fenced=stopped.set)

    def unreachable() -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    lease.start()
    lease.renew = unreachable  # type: ignore[method-assign]
    if sessions.kw["bind"].dialect.name == "sqlite":
        # The only worker there can be: nobody may claim it, so it waits for
        # its database rather than take the configuration server down.
        assert not stopped.wait(2.0)
    else:
        assert stopped.wait(5.0)
    lease.stop.set()


def test_a_worker_whose_lease_was_taken_stops(sessions: sessionmaker[Session]) -> None:
    stopped = threading.Event()
    lease = WorkerLease(sessions, "stalled", fenced=stopped.set)
    lease.start()
    lease.stop.set()
    with sessions.begin() as s:
        s.execute(update(Worker).where(Worker.id == "stalled").values(state="dead"))
    lease.renew()
    assert stopped.is_set()


def test_a_worker_id_in_use_is_refused_and_free_again_when_its_lease_ends(
    sessions: sessionmaker[Session],
) -> None:
    first = WorkerLease(sessions, "w")
    first.start()
    first.stop.set()
    with sessions.begin() as s:  # as if another process on another host held it
        s.execute(update(Worker).where(Worker.id == "w").values(host="elsewhere", pid=1))
    with pytest.raises(WorkerIdInUse) as err:
        WorkerLease(sessions, "w").start()
    assert err.value.code == "VMDR-E0508" and "elsewhere" in err.value.message
    first.close()  # a clean stop ends the lease at once
    second = WorkerLease(sessions, "w")
    second.start()
    second.stop.set()
    assert state(sessions, "w") == ("alive", None)


def test_a_killed_worker_left_as_a_zombie_on_this_host_does_not_block_its_restart(
    sessions: sessionmaker[Session],
) -> None:
    """A worker killed with SIGKILL whose parent never collects it (the first
    process of a container often does not) stays a zombie with its lease
    current: restarted on the same host, the worker resumes at once. A
    process that still runs with the id keeps it."""
    import os
    import signal
    import socket
    import subprocess
    import time

    from vmdr.model.procfs import running

    old = subprocess.Popen(["sleep", "600"])
    try:
        with sessions.begin() as s:
            s.add(Worker(id="w", host=socket.gethostname(), pid=old.pid, state="alive",
                         started_at=dt.datetime.now(dt.UTC),
                         heartbeat_at=dt.datetime.now(dt.UTC)))  # fmt: skip
        with pytest.raises(WorkerIdInUse):  # it runs: a second worker with its id
            WorkerLease(sessions, "w").start()
        os.kill(old.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while running(old.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.exists(f"/proc/{old.pid}")  # not collected: a zombie
        restarted = WorkerLease(sessions, "w")
        restarted.start()
        restarted.stop.set()
        with sessions() as s:
            row = s.get(Worker, "w")
            assert row is not None and (row.pid, row.state) == (os.getpid(), "alive")
    finally:
        old.kill()
        old.wait()
