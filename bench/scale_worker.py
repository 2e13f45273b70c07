"""A worker for bench/scale.py's throughput run: the engine with one
bench-only job kind (4 steps that each wait 200 ms, as a step that waits on
vCenter or Azure does), so that what is measured is the engine's capacity,
not this machine's two cores.

    python bench/scale_worker.py POSTGRES_URL STATE_DIR
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from vmdr.control.jobs import JobKind, StepContext  # noqa: E402
from vmdr.control.jobs.engine import Engine, QueueLimits  # noqa: E402

STEP_SECONDS = 0.2


def _wait(ctx: StepContext) -> None:
    time.sleep(STEP_SECONDS)


def register(engine: Engine) -> None:
    engine.register(JobKind("benchSleep", [(f"wait{i}", _wait) for i in range(4)]))


def main() -> None:
    from vmdr.control.db.engine import open_database, session_factory
    from vmdr.control.jobs.workers import WorkerLease, worker_id

    url, state = sys.argv[1], Path(sys.argv[2])
    engine = Engine(session_factory(open_database(url)), url)
    register(engine)
    ident = worker_id(state)
    WorkerLease(engine.sessions, ident).start()
    engine.launch_worker(ident, QueueLimits())
    print("ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
