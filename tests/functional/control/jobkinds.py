"""Job kinds for the engine's tests, and a worker process that runs them.

Each step appends its name to a ledger file only if it is not there yet
(idempotent, as steps must be) and then sleeps, so a test can kill the
worker in the middle of a step. ``python -m tests.functional.control.jobkinds
URL WORKER_ID`` runs a worker until it is killed; ``... submit URL HOLDER N``
submits N jobs on one holder at once and prints what each got."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from vmdr.control.db.engine import open_database, session_factory
from vmdr.control.jobs import Flow, JobConflict, JobKind, StepContext
from vmdr.control.jobs.engine import Engine, QueueLimits
from vmdr.control.jobs.workers import WorkerLease


def _step(name: str, seconds: float):  # type: ignore[no-untyped-def]
    def run(ctx: StepContext) -> None:
        ledger = Path(ctx.params["ledger"])
        done = ledger.read_text().split() if ledger.exists() else []
        if name not in done:
            with open(ledger, "a") as f:
                f.write(name + "\n")
        ctx.progress(name, 1, f"{name} halfway")
        time.sleep(ctx.params.get("pause", seconds))

    return run


def _boom(ctx: StepContext) -> None:
    raise RuntimeError("the target host is gone")


class SlowCopy:
    """A data operation with ``cancel()``, as the block engine's are."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.stop = seconds, threading.Event()

    def cancel(self) -> None:
        self.stop.set()

    def run(self) -> None:
        if self.stop.wait(self.seconds):
            raise RuntimeError("copy cancelled")


def _long_copy(ctx: StepContext) -> None:
    with ctx.cancellable(SlowCopy(ctx.params.get("seconds", 60))) as op:
        op.run()


def _undo(ctx: StepContext, error: dict[str, Any]) -> None:
    with Path(ctx.params["ledger"]).open("a") as f:
        f.write(f"undo:{error['code']}\n")


def _parent(flow: Flow) -> None:
    """A flow with a child job and a message, as recovery plans have."""
    engine = _ENGINE
    assert engine is not None
    child = flow.step("start-child", lambda ctx: engine.submit(
        "slow", {"ledger": ctx.params["child_ledger"]}, "child-holder",
        job_id=f"{ctx.job_id[:30]}-child", parent=ctx.job_id))  # fmt: skip
    state, _ = flow.wait_job(child)
    flow.step("child-done", lambda ctx: ctx.progress("child-done", 0, f"child {state}"))
    answer = flow.receive("go", 60)
    flow.step("answered", lambda ctx: ctx.progress("answered", 0, f"answer {answer}"))


SLOW = JobKind("slow", [(f"step{i}", _step(f"step{i}", 0.4)) for i in range(5)])
FAILING = JobKind("failing", [("step0", _step("step0", 0.0)), ("explode", _boom)], on_fail=_undo)
LATE_CANCEL = JobKind(
    "late-cancel", [(f"s{i}", _step(f"s{i}", 0.3)) for i in range(4)], cancellable_before=1
)
LONG_COPY = JobKind("long-copy", [("copy", _long_copy)], on_fail=_undo)
PARENT = JobKind("parent", flow=_parent, queue="plans")
_ENGINE: Engine | None = None


def engine(url: str) -> Engine:
    global _ENGINE
    e = Engine(session_factory(open_database(url)), url)
    for kind in (SLOW, FAILING, LATE_CANCEL, LONG_COPY, PARENT):
        e.register(kind)
    _ENGINE = e
    return e


def _submit_many(url: str, holder: str, count: int) -> None:
    e = engine(url)
    barrier = threading.Barrier(count)
    results: list[str] = []

    def one() -> None:
        barrier.wait()
        try:
            results.append("accepted:" + e.submit("slow", {"ledger": "/dev/null"}, holder))
        except JobConflict as exc:
            results.append(exc.code)
        except Exception as exc:
            results.append(f"error:{exc!r}")

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "submit":
        _submit_many(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        sys.exit(0)
    url, ident = sys.argv[1], sys.argv[2]
    lease_seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    e = engine(url)
    WorkerLease(e.sessions, ident, beat=0.5, lease=lease_seconds).start()
    e.launch_worker(ident, QueueLimits())
    print("ready", flush=True)
    while True:
        time.sleep(3600)
