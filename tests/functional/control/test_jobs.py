"""The job engine with real worker processes, on SQLite and PostgreSQL:
kill -9 mid-step and the job goes on from that step (never a finished step
again); a dead worker's jobs move to a live one; one job per holder across
processes; cancel between steps and into a running data operation; a flow
waits on a child job and on a message."""

from __future__ import annotations

import json
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

from vmdr.control.db.models import Job, JobEvent, Worker
from vmdr.control.jobs import JobConflict, NotCancellable
from vmdr.control.jobs.engine import Engine

from .jobkinds import engine as make_engine

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def jobs(database_url: str) -> Iterator[Engine]:
    e = make_engine(database_url)
    e.prepare_schema()
    yield e
    e.bind.dispose()


@pytest.fixture
def workers(database_url: str) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Start worker processes by name; all killed at the end."""
    started: dict[str, subprocess.Popen[str]] = {}
    yield started
    for proc in started.values():
        kill(proc)


def start_worker(
    started: dict[str, subprocess.Popen[str]], url: str, name: str, lease: float = 30.0
) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tests.functional.control.jobkinds", url, name, str(lease)]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    started[f"{name}-{len(started)}"] = proc
    return proc


def kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def events(sessions: sessionmaker[Session], job_id: str) -> list[tuple[str, str]]:
    with sessions() as s:
        rows = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        return [(e.step, e.kind) for e in rows if e.kind != "progress"]


def wait_for(check, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def state(sessions: sessionmaker[Session], job_id: str) -> str:
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job.state


def test_kill9_mid_step_then_restart_resumes_at_that_step(
    jobs: Engine, workers: dict, database_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    job_id = jobs.submit("slow", {"ledger": str(ledger)}, "item-1")
    proc = start_worker(workers, database_url, "w1")
    wait_for(lambda: ("step2", "start") in events(jobs.sessions, job_id))  # mid step 2
    kill(proc)
    with jobs.sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.state == "running" and job.step == 2
    start_worker(workers, database_url, "w1")  # the same worker, restarted
    wait_for(lambda: state(jobs.sessions, job_id) == "succeeded")
    # Every step's effect happened exactly once; step 2 started twice.
    assert ledger.read_text().split() == [f"step{i}" for i in range(5)]
    seen = events(jobs.sessions, job_id)
    assert seen.count(("step2", "start")) == 2 and seen.count(("step2", "end")) == 1
    assert seen.count(("step1", "start")) == 1  # a finished step never runs again
    assert [e for e in seen if e[1] == "end"] == [(f"step{i}", "end") for i in range(5)]


# Several workers share PostgreSQL; with SQLite the one worker is the
# configuration server's own, and a restart resumes it (the test above).
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_dead_workers_jobs_move_to_a_live_worker(
    jobs: Engine, workers: dict, database_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    doomed = start_worker(workers, database_url, "doomed", lease=3.0)
    job_id = jobs.submit("slow", {"ledger": str(ledger), "pause": 2.0}, "item-1")
    wait_for(lambda: ("step1", "start") in events(jobs.sessions, job_id))
    start_worker(workers, database_url, "survivor", lease=3.0)
    assert ("step4", "end") not in events(jobs.sessions, job_id)
    kill(doomed)
    killed_at = time.monotonic()
    wait_for(lambda: state(jobs.sessions, job_id) == "succeeded", timeout=60)
    assert time.monotonic() - killed_at < 30  # lease 3 s, beat 0.5 s, then the rest of the job
    assert ledger.read_text().split() == [f"step{i}" for i in range(5)]
    seen = events(jobs.sessions, job_id)
    assert seen.count(("step0", "start")) == 1 and seen.count(("step1", "end")) == 1
    with jobs.sessions() as s:
        dead = s.get(Worker, "doomed")
        assert dead is not None and dead.taken_over_by == "survivor"
        assert dead.state in ("dead", "recovered")  # recovered: nothing of it left to resume


def test_one_job_per_holder(jobs: Engine, tmp_path: Path) -> None:
    first = jobs.submit("slow", {"ledger": str(tmp_path / "a")}, "item-1")
    with pytest.raises(JobConflict) as err:
        jobs.submit("slow", {"ledger": str(tmp_path / "b")}, "item-1")
    assert err.value.code == "VMDR-E0511" and first in err.value.message
    other = jobs.submit("slow", {"ledger": str(tmp_path / "c")}, "item-2")
    assert other != first
    # Once the first is over, the item takes a new job.
    jobs.store.finish(first, "failed", {"code": "X", "message": "gone"})
    jobs.submit("slow", {"ledger": str(tmp_path / "d")}, "item-1")


def test_fifty_concurrent_submissions_from_two_processes_one_wins(
    jobs: Engine, database_url: str
) -> None:
    cmd = [sys.executable, "-m", "tests.functional.control.jobkinds", "submit", database_url,
           "item-9", "25"]  # fmt: skip
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in (1, 2)]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        results += json.loads(out)
    accepted = [r for r in results if r.startswith("accepted:")]
    assert len(accepted) == 1, results
    assert results.count("VMDR-E0511") == 49, results


def test_cancel_between_steps_and_refused_late(
    jobs: Engine, workers: dict, database_url: str, tmp_path: Path
) -> None:
    queued = jobs.submit("failing", {"ledger": str(tmp_path / "q")}, "item-1")
    assert jobs.cancel(queued) is True  # no worker has begun it: it ends now
    assert state(jobs.sessions, queued) == "cancelled"
    assert (tmp_path / "q").read_text().split() == ["undo:VMDR-E0513"]  # its undo ran, once
    jobs.submit("slow", {"ledger": str(tmp_path / "q2")}, "item-1")  # the lock is free at once
    assert jobs.client.list_workflows(workflow_ids=[queued])[0].status == "CANCELLED"
    late = jobs.submit("late-cancel", {"ledger": str(tmp_path / "l")}, "item-2")
    start_worker(workers, database_url, "w1")
    assert (tmp_path / "q").read_text().split() == ["undo:VMDR-E0513"]  # no step ran
    wait_for(lambda: ("s1", "start") in events(jobs.sessions, late))
    with pytest.raises(NotCancellable) as err:
        jobs.cancel(late)
    assert err.value.code == "VMDR-E0514"
    wait_for(lambda: state(jobs.sessions, late) == "succeeded")


def test_cancel_reaches_the_running_data_operation(
    jobs: Engine, workers: dict, database_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    job_id = jobs.submit("long-copy", {"ledger": str(ledger), "seconds": 120}, "item-1")
    start_worker(workers, database_url, "w1")
    wait_for(lambda: ("copy", "start") in events(jobs.sessions, job_id))
    asked = time.monotonic()
    assert jobs.cancel(job_id) is True
    wait_for(lambda: state(jobs.sessions, job_id) == "cancelled", timeout=30)
    assert time.monotonic() - asked < 10  # not the copy's 120 s
    with jobs.sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.error is not None and job.error["code"] == "VMDR-E0513"
    assert ("copy", "cancelled") in events(jobs.sessions, job_id)
    assert ledger.read_text().split() == ["undo:VMDR-E0513"]  # the kind's undo ran once


def test_a_running_job_gives_way_to_another_on_its_holder(
    jobs: Engine, workers: dict, database_url: str, tmp_path: Path
) -> None:
    """How a running replication cycle gives way to a failover: cancelled in
    its data copy and waited for, then the holder is free."""
    copy = jobs.submit("long-copy", {"ledger": str(tmp_path / "c"), "seconds": 120}, "item-1")
    other = jobs.submit("slow", {"ledger": str(tmp_path / "s"), "pause": 30}, "item-2")
    start_worker(workers, database_url, "w1")
    wait_for(lambda: ("copy", "start") in events(jobs.sessions, copy))
    wait_for(lambda: state(jobs.sessions, other) == "running")
    assert jobs.give_way("item-2", ("long-copy",), 5) is False  # not a kind that gives way
    asked = time.monotonic()
    assert jobs.give_way("item-1", ("long-copy",), 30) is True
    assert time.monotonic() - asked < 10  # not the copy's 120 s
    assert state(jobs.sessions, copy) == "cancelled"
    jobs.submit("slow", {"ledger": str(tmp_path / "n")}, "item-1")  # the holder is free
    assert jobs.give_way("item-3", ("long-copy",), 5) is False  # nothing holds it


def test_a_failed_step_runs_the_undo_and_keeps_the_error(
    jobs: Engine, workers: dict, database_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    job_id = jobs.submit("failing", {"ledger": str(ledger)}, "item-1")
    start_worker(workers, database_url, "w1")
    wait_for(lambda: state(jobs.sessions, job_id) == "failed")
    with jobs.sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.error is not None
        assert job.error["code"] == "VMDR-E0500" and "target host is gone" in job.error["message"]
    assert ledger.read_text().split() == ["step0", "undo:VMDR-E0500"]
    assert ("explode", "error") in events(jobs.sessions, job_id)


def test_a_flow_waits_on_its_child_and_a_message_across_a_kill(
    jobs: Engine, workers: dict, database_url: str, tmp_path: Path
) -> None:
    child_ledger = tmp_path / "child"
    job_id = jobs.submit("parent", {"child_ledger": str(child_ledger)}, "plan-1")
    proc = start_worker(workers, database_url, "w1")
    child = f"{job_id[:30]}-child"
    wait_for(lambda: ("step3", "start") in events(jobs.sessions, child))
    kill(proc)  # the parent waits on the child; both resume
    start_worker(workers, database_url, "w1")
    wait_for(lambda: ("child-done", "end") in events(jobs.sessions, job_id))
    with jobs.sessions() as s:
        c = s.get(Job, child)
        assert c is not None and c.state == "succeeded" and c.parent_id == job_id
    assert child_ledger.read_text().split() == [f"step{i}" for i in range(5)]
    assert state(jobs.sessions, job_id) == "running"  # waits for the message
    jobs.send(job_id, "go", "yes")
    wait_for(lambda: state(jobs.sessions, job_id) == "succeeded")
    assert events(jobs.sessions, job_id).count(("start-child", "end")) == 1
    with jobs.sessions() as s:
        answered = s.scalars(
            select(JobEvent.message).where(
                JobEvent.job_id == job_id, JobEvent.step == "answered", JobEvent.kind == "progress"
            )
        ).all()
    assert answered == ["answer yes"]


def test_finished_jobs_beyond_the_retention_are_forgotten(jobs: Engine, tmp_path: Path) -> None:
    import datetime as dt

    from sqlalchemy import update

    old, active, recent = (
        jobs.submit("slow", {"ledger": str(tmp_path / n)}, f"item-{n}") for n in "abc"
    )
    jobs.store.finish(old, "succeeded", None)
    jobs.store.finish(recent, "failed", {"code": "X", "message": "m"})
    jobs.store.event(old, "step0", "start")
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    with jobs.sessions.begin() as s:
        s.execute(update(Job).where(Job.id.in_([old, active])).values(updated_at=long_ago))
    now = dt.datetime.now(dt.UTC)
    assert jobs.prune(now - dt.timedelta(days=30), now - dt.timedelta(hours=1)) == 1
    with jobs.sessions() as s:
        assert s.get(Job, old) is None and s.get(Job, active) is not None
        assert s.get(Job, recent) is not None
        assert s.scalars(select(JobEvent).where(JobEvent.job_id == old)).all() == []
    known = {w.workflow_id for w in jobs.client.list_workflows(workflow_ids=[old, active])}
    assert known == {active}  # the engine's checkpoints went with the job


def test_reconcile_fails_a_job_whose_workflow_ended_and_gives_an_orphan_a_workflow(
    jobs: Engine, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    broken = jobs.submit("failing", {"ledger": str(ledger)}, "item-1")
    orphan = jobs.submit("slow", {"ledger": str(tmp_path / "o")}, "item-2")
    jobs.client.cancel_workflow(broken)  # ended behind the engine's back
    jobs.client.delete_workflows([orphan])  # as in a database restored from a backup
    assert jobs.reconcile() == {"adopted": [orphan], "failed": [broken]}
    with jobs.sessions() as s:
        job = s.get(Job, broken)
        assert job is not None and job.state == "failed" and job.error is not None
        assert job.error["code"] == "VMDR-E0509"
    assert ledger.read_text().split() == ["undo:VMDR-E0509"]  # the item put back
    assert [w.status for w in jobs.client.list_workflows(workflow_ids=[orphan])] == ["ENQUEUED"]
    assert jobs.reconcile() == {"adopted": [], "failed": []}  # nothing twice
