"""What an idle control plane costs: one API replica and W workers on a
private PostgreSQL, nothing queued, nothing due.

    .venv/bin/python bench/idle.py --workers 2 --seconds 30 [--json out.json]

Prints the CPU of each process (percent of one core over ``--seconds``), their
sum, and PostgreSQL's own. A worker's idle cost is the job engine polling its
queues (DBOS queues are polled, not woken) and its lease; the API replica
runs no engine. ``bench/scale.py`` measures the same with 1,000 items.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.scale import postgres  # noqa: E402

from vmdr.lab.pair import Service  # noqa: E402


def cpu_seconds(procs: list[psutil.Process]) -> list[float]:
    return [sum(p.cpu_times()[:2]) for p in procs]


def measure(base: Path, workers: int, seconds: float) -> dict[str, float]:
    with postgres(base / "pg") as url:
        api = Service("configuration-server", ["--database", url, "--no-worker"], base / "cs",
                      base / "pki")  # fmt: skip
        api.start()
        started: list[subprocess.Popen[str]] = []
        try:
            for i in range(workers):
                folder = base / f"worker-{i}"
                folder.mkdir()
                shutil.copy(base / "cs" / "secret.key", folder / "secret.key")
                proc = subprocess.Popen(
                    [sys.executable, "-m", "vmdr", "serve", "worker", "--database", url,
                     "--state-dir", str(folder)],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                    start_new_session=True,
                )  # fmt: skip
                started.append(proc)
                assert proc.stdout is not None and '"worker"' in proc.stdout.readline()
            time.sleep(5)  # past the start-up (migrations, the first reconcile)
            assert api.proc is not None
            names = ["api", *(f"worker-{i}" for i in range(workers))]
            procs = [psutil.Process(p) for p in [api.proc.pid, *(w.pid for w in started)]]
            database = [p for p in psutil.process_iter(["cmdline"])
                        if "postgres" in " ".join(p.info["cmdline"] or [])[:40]]  # fmt: skip
            before, db_before = cpu_seconds(procs), sum(cpu_seconds(database))
            time.sleep(seconds)
            after = cpu_seconds(procs)
            db_after = sum(cpu_seconds([p for p in database if p.is_running()]))
            out = {f"{n}_percent": round(100 * (a - b) / seconds, 2)
                   for n, a, b in zip(names, after, before, strict=True)}  # fmt: skip
            out["control_plane_percent"] = round(100 * (sum(after) - sum(before)) / seconds, 2)
            out["postgres_percent"] = round(100 * (db_after - db_before) / seconds, 2)
            return out
        finally:
            for proc in started:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            api.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vmdr-idle-") as tmp:
        result = measure(Path(tmp), args.workers, args.seconds)
    for key, value in result.items():
        print(f"{key:24} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
