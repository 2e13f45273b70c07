"""The control plane at scale: N protected VMs, W workers, one PostgreSQL.

    .venv/bin/python bench/scale.py --items 1000 --workers 2 --json out.json [--check]

Builds a loopback lab (the vCenter simulator, Azurite, BIND, a process server
and a master target: ``vmdr lab up``), a private PostgreSQL, a configuration
server API replica (``--no-worker``) and W ``vmdr serve worker`` processes on
it, N simulator VMs with 1 MiB disks, then measures what issue 19 names:

    discover            discovery of the N VMs
    protect             N protect requests, 32 at a time: failures, 5xx, p95; all jobs done
    idle_cpu            API + workers (the scheduler runs in them), nothing due, 30 s
    statements          per scheduler tick (nothing due) and per page of 100 items
    overview            GET /v1/overview p95, idle and while cycles run
    threads             most threads in one process
    plan                a 100-VM unplanned failover plan while replication runs
    kill                kill -9 of the API and one worker at 30 % of another such plan:
                        it finishes by itself, one cloud VM per item
    throughput          jobs of 4 steps of 200 ms: W=1 against W (``--workers``)

``--pairs`` is recorded but not used yet: every item replicates through the
one process server and master target of the data-plane file until items carry
their own pair (issue 21). Prints a table and, with ``--check``, exits 1 when
a target is missed.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from vmdr.lab.lab import Lab, vcenter_endpoint  # noqa: E402
from vmdr.lab.pair import Service  # noqa: E402
from vmdr.lab.services import STORAGE_ACCOUNTS_FILE  # noqa: E402
from vmdr.transport.client import RemoteError, ServiceClient  # noqa: E402

TARGETS: dict[str, tuple[str, float]] = {
    "discover_seconds": ("<=", 30.0),
    "protect_failed": ("<=", 0),
    "protect_5xx": ("<=", 0),
    "protect_request_p95_seconds": ("<=", 1.0),
    "idle_cpu_percent": ("<=", 5.0),
    "statements_per_tick": ("<=", 5),
    "statements_per_items_page": ("<=", 10),
    "overview_idle_p95_ms": ("<=", 300.0),
    "overview_busy_p95_ms": ("<=", 1000.0),
    "threads_max": ("<=", 64),
    "plan_seconds": ("<=", 120.0),
    "kill_plan_seconds": ("<=", 180.0),
    "kill_cloud_vms_per_item": ("==", 1.0),
    "throughput_ratio": (">=", 1.6),
}


# -- the parts --------------------------------------------------------------------------
@contextmanager
def postgres(base: Path) -> Iterator[str]:
    """A private PostgreSQL (as tests/conftest.py starts one)."""
    pg_bin = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))[-1].parent
    data, sock = base / "pg-data", base / "pg-sock"
    sock.mkdir(parents=True)
    run_as: list[str] = []
    if os.geteuid() == 0:
        run_as = ["runuser", "-u", "postgres", "--"]
        for path in (base, sock):
            shutil.chown(path, "postgres")
        for parent in [base, *base.parents]:
            if parent != Path("/"):
                parent.chmod(parent.stat().st_mode | 0o011)
    from vmdr.lab.process import free_port

    port = free_port()
    subprocess.run(
        [
            *run_as,
            str(pg_bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "vmdr",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *run_as,
            str(pg_bin / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(base / "pg.log"),
            "-o",
            f"-p {port} -k {sock} -c listen_addresses='' -c fsync=off -c max_connections=300",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        for name in ("vmdr", "throughput"):
            subprocess.run(
                [
                    *run_as,
                    str(pg_bin / "createdb"),
                    "-h",
                    str(sock),
                    "-p",
                    str(port),
                    "-U",
                    "vmdr",
                    name,
                ],
                check=True,
                capture_output=True,
            )
        yield f"postgresql+psycopg://vmdr@/vmdr?host={sock}&port={port}"
    finally:
        subprocess.run(
            [*run_as, str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
        )


def make_vms(lab: Lab, count: int) -> list[str]:
    """``count`` VMs with one 1 MiB disk each on vmfs-01, as the lab makes its own."""
    from vmdr.lab.populate import LabVm, create_vm
    from vmdr.providers.vsphere.session import session

    state = lab.state()
    assert state is not None
    dirs = {
        d["name"]: Path(d["path"])
        for d in state.service("vcenter").details["topology"]["datastores"]
    }
    names = [f"scale-{i:04d}" for i in range(count)]
    with session(vcenter_endpoint(lab.directory, state)) as si:
        for seed, name in enumerate(names, 1000):
            create_vm(si, LabVm(name, "vmfs-01", disks_mib=(1,)), dirs, seed)
    return names


class Control:
    """The configuration server API replica and the workers, on PostgreSQL."""

    def __init__(self, base: Path, url: str, lab: Lab) -> None:
        self.base, self.url, self.lab = base, url, lab
        self.state = base / "cs"
        self.api: Service | None = None
        self.workers: list[subprocess.Popen[str]] = []

    def start_api(self) -> ServiceClient:
        self.api = Service(
            "configuration-server",
            ["--database", self.url, "--no-worker"],
            self.state,
            self.base / "pki",
        )
        self.api.start()
        lab_cs = Path(self.lab.state().service("configuration-server").details["state"])  # type: ignore[union-attr]
        if not (self.state / "dataplane.json").exists():
            shutil.copy(lab_cs / "dataplane.json", self.state / "dataplane.json")
        return self.client()

    def client(self) -> ServiceClient:
        assert self.api is not None
        token = (self.state / "admin.token").read_text()
        return ServiceClient(
            "configuration server", self.api.url, self.api.ca_file, token, timeout=120
        )

    def start_worker(self, index: int) -> subprocess.Popen[str]:
        folder = self.base / f"worker-{index}"
        folder.mkdir(exist_ok=True)
        for name in ("secret.key", "dataplane.json"):
            shutil.copy(self.state / name, folder / name)
        (folder / "scripts").mkdir(exist_ok=True)
        log = (self.base / f"worker-{index}.log").open("a")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vmdr",
                "serve",
                "worker",
                "--database",
                self.url,
                "--state-dir",
                str(folder),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        assert proc.stdout is not None and '"worker"' in proc.stdout.readline()
        self.workers.append(proc)
        return proc

    def set_plane(self, **changes: Any) -> None:
        """The data-plane file of the API and every worker."""
        for folder in [self.state, *sorted(self.base.glob("worker-*/"))]:
            path = folder / "dataplane.json"
            path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))

    def pids(self) -> list[int]:
        assert self.api is not None and self.api.proc is not None
        return [self.api.proc.pid, *(w.pid for w in self.workers if w.poll() is None)]

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.api is not None:
            self.api.stop()


# -- measuring ----------------------------------------------------------------------------
def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def wait_jobs(c: ServiceClient, jobs: list[str], timeout: float) -> dict[str, str]:
    deadline, states = time.monotonic() + timeout, {}
    pending = list(jobs)
    while pending and time.monotonic() < deadline:
        still = []
        for job in pending:
            state = c.get(f"/v1/jobs/{job}/events?after=999999999")["state"]
            (still.append(job) if state in ("queued", "running") else states.update({job: state}))
        pending = still
        if pending:
            time.sleep(1.0)
    states.update({job: "timeout" for job in pending})
    return states


def cpu_percent(pids: list[int], seconds: float) -> float:
    procs = [psutil.Process(p) for p in pids]
    before = [p.cpu_times() for p in procs]
    time.sleep(seconds)
    after = [p.cpu_times() for p in procs]
    used = sum(a.user + a.system - b.user - b.system for a, b in zip(after, before, strict=True))
    return round(100 * used / seconds, 2)


def most_threads(pids: list[int]) -> int:
    return max(psutil.Process(p).num_threads() for p in pids)


def timed_gets(c: ServiceClient, path: str, count: int) -> list[float]:
    out = []
    for _ in range(count):
        start = time.perf_counter()
        c.get(path)
        out.append(1000 * (time.perf_counter() - start))
    return out


def statements(url: str, state: Path) -> dict[str, int]:
    """Statements of one scheduler tick with nothing due and of a page of 100
    items, counted on the engine's connection."""
    from sqlalchemy import event

    from vmdr.control.api.items import list_items
    from vmdr.control.db.engine import open_database, session_factory
    from vmdr.control.jobs.engine import Engine
    from vmdr.control.server import job_kinds
    from vmdr.control.workflows.context import Workflows
    from vmdr.control.workflows.replicator import schedule_due

    sessions = session_factory(open_database(url))
    engine = Engine(sessions, url)
    wf = Workflows(sessions, engine, lambda: None, state)  # type: ignore[arg-type,return-value]
    for kind in job_kinds(wf):
        engine.register(kind)
    seen: list[str] = []
    event.listen(engine.bind, "before_cursor_execute", lambda *a: seen.append(a[2]))
    schedule_due(wf, time.time() - 1e6)  # nothing can be due a million seconds ago
    tick = len(seen)
    seen.clear()
    with sessions() as s:
        list_items(s, wf, 100, None)
    page = len(seen)
    engine.bind.dispose()
    return {"statements_per_tick": tick, "statements_per_items_page": page}


def run_plan(c: ServiceClient, name: str, items: list[str]) -> str:
    with suppress(RemoteError):
        c.delete(f"/v1/recovery-plans/{name}")
    c.post(
        "/v1/recovery-plans", {"name": name, "spec": {"groups": [{"name": "all", "items": items}]}}
    )
    return str(c.post(f"/v1/recovery-plans/{name}/unplannedFailover", {})["job"])


def cloud_vms(lab: Lab, names: list[str]) -> float:
    """Cloud VMs per item of ``names`` (1.0: each exactly once)."""
    records = json.loads((lab.directory / "cloud-vms" / "cloud-vms.json").read_text())
    counts = [sum(1 for vm in records if vm == n) for n in names]
    return min(counts) if counts and min(counts) == max(counts) else -1.0


def throughput(base: Path, url: str, workers: int) -> float:
    """Jobs a minute with ``workers`` workers: 64 jobs of 4 steps of 200 ms
    (a bench-only kind, run by bench/scale_worker.py processes, in a database
    of its own)."""
    from bench.scale_worker import register
    from sqlalchemy import text

    from vmdr.control.db.engine import open_database, session_factory
    from vmdr.control.jobs.engine import Engine

    url = url.replace("/vmdr?", "/throughput?")
    engine = Engine(session_factory(open_database(url)), url)
    engine.prepare_schema()
    with engine.sessions.begin() as s:  # each run from an empty table
        s.execute(text("DELETE FROM jobs"))
    register(engine)
    procs = []
    for i in range(workers):
        folder = base / f"bench-worker-{workers}-{i}"
        folder.mkdir(exist_ok=True)
        procs.append(
            subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "scale_worker.py"), url, str(folder)],
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        start = time.monotonic()
        jobs = [engine.submit("benchSleep", {}, None) for _ in range(64)]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with engine.sessions() as s:
                from sqlalchemy import func, select

                from vmdr.control.db.models import Job

                done = s.scalar(
                    select(func.count()).where(Job.id.in_(jobs), Job.state == "succeeded")
                )
            if done == len(jobs):
                break
            time.sleep(0.2)
        return round(len(jobs) * 60 / (time.monotonic() - start), 1)
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            if p.stdout is not None:
                p.stdout.close()
        engine.bind.dispose()


# -- the run ------------------------------------------------------------------------------
def measure(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"items": args.items, "pairs": args.pairs, "workers": args.workers}
    lab = Lab(base / "lab")
    lab.up()
    # The API and the workers open the lab's page blobs with its account key,
    # as the lab's own configuration server does.
    os.environ["VMDR_STORAGE_ACCOUNTS"] = str(lab.directory / STORAGE_ACCOUNTS_FILE)
    control = None
    try:
        with postgres(base / "pg") as url:
            step("simulator VMs")
            names = make_vms(lab, args.items)
            control = Control(base, url, lab)
            c = control.start_api()
            for i in range(args.workers):
                control.start_worker(i)
            control.set_plane(replication_interval=3600)  # nothing due until asked
            vcenter, creds = lab.state().service("vcenter"), lab.credentials()["vcenter"]  # type: ignore[union-attr]
            site = c.post("/v1/sites", {"name": "on-premises", "role": "primary"})
            vc = c.post(
                "/v1/vcenters",
                {
                    "site": site["id"],
                    "name": "vc",
                    "url": vcenter.url,
                    "user": creds["user"],
                    "password": creds["password"],
                    "ca_pem": Path(vcenter.details["ca"]).read_text(),
                },
            )
            step("discover")
            start = time.monotonic()
            job = c.post(f"/v1/vcenters/{vc['id']}/discover")["job"]
            assert wait_jobs(c, [job], 600)[job] == "succeeded"
            out["discover_seconds"] = round(time.monotonic() - start, 1)

            step(f"protect {len(names)}")
            latencies, failed, server_errors, jobs = [], 0, 0, []

            def protect(name: str) -> None:
                nonlocal failed, server_errors
                with control.client() as cc:  # type: ignore[union-attr]
                    t = time.perf_counter()
                    try:
                        jobs.append(cc.post("/v1/protected-items", {"machine": name})["job"])
                    except RemoteError as exc:
                        failed += 1
                        server_errors += exc.status >= 500
                    latencies.append(time.perf_counter() - t)

            start = time.monotonic()
            with cf.ThreadPoolExecutor(32) as pool:
                list(pool.map(protect, names))
            out["protect_request_p95_seconds"] = round(p95(latencies), 3)
            out["protect_5xx"] = server_errors
            states = wait_jobs(c, jobs, 3600)
            out["protect_failed"] = failed + sum(s != "succeeded" for s in states.values())
            out["protect_all_seconds"] = round(time.monotonic() - start, 1)
            if out["protect_failed"]:
                raise SystemExit(f"{out['protect_failed']} protections failed; see the worker logs")

            step("idle")
            time.sleep(5)
            out["idle_cpu_percent"] = cpu_percent(control.pids(), 30)
            # What one more worker adds (the API replica runs no engine).
            out["idle_cpu_per_worker_percent"] = round(
                cpu_percent(control.pids()[1:], 30) / max(1, args.workers), 2
            )
            out["threads_max"] = most_threads(control.pids())
            out.update(statements(url, control.state))
            out["overview_idle_p95_ms"] = round(p95(timed_gets(c, "/v1/overview", 40)), 1)

            step("replication running (interval 300 s, as the issue measured)")
            control.set_plane(replication_interval=300)
            deadline = time.monotonic() + 420
            while time.monotonic() < deadline:  # the first items become due
                cycles = [
                    j for j in c.get("/v1/jobs?active=true&limit=1000") if j["kind"] == "replicate"
                ]
                if len(cycles) >= 4:
                    break
                time.sleep(2)
            out["overview_busy_p95_ms"] = round(p95(timed_gets(c, "/v1/overview", 40)), 1)
            out["threads_max"] = max(out["threads_max"], most_threads(control.pids()))

            plan_items = names[:100]
            step("plan of 100 (replication running)")
            start = time.monotonic()
            job = run_plan(c, "scale-a", plan_items)
            out["plan_state"] = wait_jobs(c, [job], 900)[job]
            out["plan_seconds"] = round(time.monotonic() - start, 1)

            kill_items = names[100:200]
            step("plan of 100, API and a worker killed at 30 %")
            start = time.monotonic()
            job = run_plan(c, "scale-b", kill_items)
            while True:
                children = c.get(f"/v1/jobs?parent={job}&limit=1000")
                done = sum(1 for j in children if j["state"] == "succeeded")
                if done >= 30 or time.monotonic() - start > 600:
                    break
                time.sleep(0.5)
            assert control.api is not None
            control.api.kill9()
            os.killpg(control.workers[0].pid, signal.SIGKILL)
            control.workers[0].wait()
            c = control.start_api()
            out["kill_plan_state"] = wait_jobs(c, [job], 900)[job]
            out["kill_plan_seconds"] = round(time.monotonic() - start, 1)
            out["kill_cloud_vms_per_item"] = cloud_vms(lab, kill_items)
            control.set_plane(replication_interval=3600)

            step("throughput")
            control.stop()
            one = throughput(base, url, 1)
            many = throughput(base, url, args.workers)
            out["throughput_jobs_per_minute"] = {"1": one, str(args.workers): many}
            out["throughput_ratio"] = round(many / one, 2) if one else 0.0
    finally:
        if control is not None:
            control.stop()
        lab.down()
    return out


def step(what: str) -> None:
    print(f"[scale] {time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def verdicts(result: dict[str, Any]) -> dict[str, bool]:
    ops: dict[str, Callable[[float, float], bool]] = {
        "<=": lambda a, b: a <= b,
        ">=": lambda a, b: a >= b,
        "==": lambda a, b: a == b,
    }
    out = {k: ops[op](float(result[k]), limit) for k, (op, limit) in TARGETS.items() if k in result}
    # A plan's time counts only when the plan succeeded.
    for seconds in ("plan_seconds", "kill_plan_seconds"):
        state = seconds.replace("seconds", "state")
        if seconds in out:
            out[seconds] = out[seconds] and result.get(state) == "succeeded"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vmdr-scale-") as tmp:
        result = measure(args, Path(tmp))
    passed = verdicts(result)
    result["verdicts"] = passed
    for key, value in result.items():
        if key == "verdicts":
            continue
        mark = "" if key not in passed else ("  PASS" if passed[key] else "  MISS")
        target = f"  (target {TARGETS[key][0]} {TARGETS[key][1]})" if key in TARGETS else ""
        print(f"{key:32} {value}{target}{mark}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if args.check and not all(passed.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
