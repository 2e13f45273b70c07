"""Durable jobs: kill -9 mid-job and the job resumes; one job per item;
cancel; every step's start, end and error are events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vmdr.control.db.engine import open_database, session_factory
from vmdr.control.db.models import Job, JobEvent
from vmdr.control.jobs import JobConflict, NotCancellable

from .jobkinds import runner

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = open_database(database_url)
    yield session_factory(engine)
    engine.dispose()


def events(sessions, job_id: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with sessions() as s:
        rows = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        return [(e.step, e.kind) for e in rows if e.kind != "progress"]


def test_kill9_mid_job_then_restart_resumes_it(
    database_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    job_id = runner(sessions).submit("slow", {"ledger": str(ledger)}, item_id="item-1")
    child = [sys.executable, "-m", "tests.functional.control.jobkinds", database_url]
    proc = subprocess.Popen(child, cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 30
    while ("step2", "start") not in events(sessions, job_id):  # in the middle of step 2
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.state == "running" and job.step == 2
    out = subprocess.run(child, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    with sessions() as s:
        assert s.get(Job, job_id).state == "succeeded"  # type: ignore[union-attr]
    # Every step's effect happened exactly once; step 2 started twice.
    assert ledger.read_text().split() == [f"step{i}" for i in range(5)]
    seen = events(sessions, job_id)
    assert seen.count(("step2", "start")) == 2 and seen.count(("step2", "end")) == 1
    assert [e for e in seen if e[1] == "end"] == [(f"step{i}", "end") for i in range(5)]


def test_one_job_per_item(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    r = runner(sessions)
    first = r.submit("slow", {"ledger": str(tmp_path / "a")}, item_id="item-1")
    with pytest.raises(JobConflict) as err:
        r.submit("slow", {"ledger": str(tmp_path / "b")}, item_id="item-1")
    assert err.value.code == "VMDR-E0511" and first in err.value.message
    other = r.submit("slow", {"ledger": str(tmp_path / "c")}, item_id="item-2")
    assert other != first
    r.cancel(first)
    assert r.run(first) == "cancelled"
    # Once the first is over, the item takes a new job.
    r.submit("slow", {"ledger": str(tmp_path / "d")}, item_id="item-1")


def test_failure_is_recorded_with_the_error(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    r = runner(sessions)
    job_id = r.submit("failing", {"ledger": str(tmp_path / "l")})
    assert r.run(job_id) == "failed"
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None and "target host is gone" in job.error["message"]  # type: ignore[index]
    assert events(sessions, job_id)[-1] == ("explode", "error")


def test_cancel_only_where_the_kind_allows(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    r = runner(sessions)
    job_id = r.submit("late-cancel", {"ledger": str(tmp_path / "l")})
    thread = r.start_in_thread(job_id)
    deadline = time.monotonic() + 10
    while ("s1", "start") not in events(sessions, job_id):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(NotCancellable) as err:
        r.cancel(job_id)
    assert err.value.code == "VMDR-E0514"
    thread.join(10)
    with sessions() as s:
        assert s.get(Job, job_id).state == "succeeded"  # type: ignore[union-attr]
