"""Job kinds for the durable-job tests, importable by a child process.

Each step appends its name to a ledger file only if it is not there yet
(idempotent, as steps must be) and then sleeps, so a test can kill the
process in the middle of a step."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from vmdr.control.db.engine import open_database, session_factory
from vmdr.control.jobs import JobKind, JobRunner, StepContext


def _step(name: str, seconds: float):  # type: ignore[no-untyped-def]
    def run(ctx: StepContext) -> None:
        ledger = Path(ctx.params["ledger"])
        done = ledger.read_text().split() if ledger.exists() else []
        if name not in done:
            with open(ledger, "a") as f:
                f.write(name + "\n")
        ctx.progress(name, 1, f"{name} halfway")
        time.sleep(seconds)

    return run


def _boom(ctx: StepContext) -> None:
    raise RuntimeError("the target host is gone")


SLOW = JobKind("slow", [(f"step{i}", _step(f"step{i}", 0.4)) for i in range(5)])
FAILING = JobKind("failing", [("step0", _step("step0", 0.0)), ("explode", _boom)])
LATE_CANCEL = JobKind(
    "late-cancel", [(f"s{i}", _step(f"s{i}", 0.3)) for i in range(4)], cancellable_before=1
)


def runner(sessions: sessionmaker[Session]) -> JobRunner:
    r = JobRunner(sessions)
    for kind in (SLOW, FAILING, LATE_CANCEL):
        r.register(kind)
    return r


if __name__ == "__main__":  # the "configuration server": resume whatever is pending
    print(runner(session_factory(open_database(sys.argv[1]))).resume_all(), flush=True)
