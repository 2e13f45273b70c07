"""Benchmark of replication through the services: process server -> master
target over loopback TLS, against rsync to a local rsync daemon and against
the in-process DiffResync; then the recovery-point lag under a write load.

    .venv/bin/python bench/replication.py [--size-gib 4] [--dir /tmp/vmdr-bench] [--rounds 3]
    .venv/bin/python bench/replication.py --rpo-only [--rpo-seconds 120] [--rate-mb 20]

Part 1 uses the image pair of bench/resync.py (4 GiB, ~60 % random data,
40 % holes; a stale copy with 1 % of its 64 KiB blocks changed). Each round,
on a fresh stale copy with both files in the page cache:

    inproc   DiffResync(src, stale) in this process (hashes the target in a worker)
    wire     a replication with initial="diff": the master target hashes the
             stale copy and streams its digests; the process server hashes the
             source and sends the differing blocks (zstd, TLS); the process
             server's own time from starting the sync to holding the master
             target's recovery point ("wire+api" adds the REST request and
             polling for the result every 0.1 s)
    rsync    rsync --inplace --no-whole-file SRC rsync://127.0.0.1:PORT/bench/stale.img
             (a local rsync daemon: rsync's own protocol over loopback TCP)

Part 2 (RPO): a 1 GiB source replicated with a point every 2 s while a writer
writes --rate-mb MB/s of random 64 KiB-1 MiB writes into it and feeds their
extents to the process server every 250 ms. Every 0.5 s the lag (now minus the
time of the newest point the master target holds) is sampled; p50/p99/max
over --rpo-seconds are printed. At the end the target must equal the source.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resync import GiB, MiB, build, identical, restore_stale, warm
from vmdr.blocks import DiffResync, open_backend
from vmdr.lab.pair import Pair
from vmdr.lab.process import free_port, port_open


def rsync_daemon(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    data = root / "rsyncd"
    data.mkdir(parents=True, exist_ok=True)
    conf = root / "rsyncd.conf"
    conf.write_text(
        f"port = {port}\naddress = 127.0.0.1\nuse chroot = no\npid file = {root}/rsyncd.pid\n"
        f"[bench]\npath = {data}\nread only = no\nuid = root\ngid = root\n"
    )
    proc = subprocess.Popen(
        ["rsync", "--daemon", "--no-detach", f"--config={conf}"], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while not port_open("127.0.0.1", port):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("rsync daemon did not start")
        time.sleep(0.05)
    return proc, port


def wait_initial(pair: Pair, repl: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with pair.ps_client() as c:
        while time.monotonic() < deadline:
            status: dict[str, Any] = c.get(f"/v1/replications/{repl}")
            if status["initial_done"]:
                return status
            time.sleep(0.1)  # polls cost the process server CPU: not too often
    raise SystemExit(f"replication {repl} did not finish: {status}")


def part1(folder: Path, rounds: int) -> dict[str, list[float]]:
    src, work = folder / "src.img", folder / "work.img"
    root = Path(tempfile.mkdtemp(prefix="repl-", dir=folder))
    pair = Pair(root)
    daemon, port = rsync_daemon(root)
    times: dict[str, list[float]] = {"inproc": [], "wire": [], "wire+api": [], "rsync": []}
    sent: list[int] = []
    try:
        for n in range(rounds):
            # in-process
            restore_stale(folder, work)
            warm(src, work)
            with open_backend(str(src)) as s, open_backend(str(work), "rw") as d:
                t0 = time.perf_counter()
                DiffResync(s, d).run()
                times["inproc"].append(time.perf_counter() - t0)
            assert identical(src, work), "inproc result differs"
            # over the wire, through the services
            restore_stale(folder, work)
            target = pair.ds / "bench" / f"r{n}.img"
            target.parent.mkdir(exist_ok=True)
            os.rename(work, target)
            warm(src, target)
            with pair.ps_client() as c:
                t0 = time.perf_counter()
                body = pair.replication(f"r{n}", str(src), f"bench/r{n}.img",
                                        initial="diff", interval=3600)  # fmt: skip
                c.post("/v1/replications", body)
            status = wait_initial(pair, f"r{n}")
            times["wire+api"].append(time.perf_counter() - t0)
            times["wire"].append(status["initial_seconds"])
            sent.append(status["sent_bytes"])
            with pair.ps_client() as c:
                c.delete(f"/v1/replications/r{n}")
            assert identical(src, target), "wire result differs"
            os.rename(target, work)
            # rsync daemon
            restore_stale(folder, work)
            dst = root / "rsyncd" / "stale.img"
            os.rename(work, dst)
            warm(src, dst)
            t0 = time.perf_counter()
            subprocess.run(
                ["rsync", "--inplace", "--no-whole-file", str(src),
                 f"rsync://127.0.0.1:{port}/bench/stale.img"],
                check=True,
            )  # fmt: skip
            times["rsync"].append(time.perf_counter() - t0)
            assert identical(src, dst), "rsync result differs"
            os.rename(dst, work)
            print(
                f"round {n + 1}: inproc {times['inproc'][-1]:.3f} s  wire {times['wire'][-1]:.3f} s"
                f"  rsync {times['rsync'][-1]:.3f} s  (wire sent {sent[-1] / MiB:.1f} MiB)",
                flush=True,
            )
    finally:
        daemon.terminate()
        daemon.wait()
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nmedian of {rounds} rounds, load average {os.getloadavg()[0]:.2f}:")
    for k, v in med.items():
        print(f"  {k:7s} {v:8.3f} s")
    over = med["wire"] / med["inproc"]
    faster = med["rsync"] / med["wire"]
    print(f"  wire / inproc = {over:.2f}x  (target <= 1.5x)  {'PASS' if over <= 1.5 else 'MISS'}")
    print(f"  rsync / wire  = {faster:.2f}x  (target >= 5x)    {'PASS' if faster >= 5 else 'MISS'}")
    return times


def writer(source: Path, rate: int, stop: threading.Event, extents: list[tuple[int, int]],
           lock: threading.Lock) -> None:  # fmt: skip
    rnd = random.Random(7)
    size = source.stat().st_size
    tick = 0.05
    with open(source, "r+b") as f:
        next_at = time.monotonic()
        while not stop.is_set():
            budget = int(rate * tick)
            while budget > 0:
                n = min(budget, rnd.randrange(64 << 10, 1 << 20))
                off = rnd.randrange(0, size - n) // 4096 * 4096
                os.pwrite(f.fileno(), rnd.randbytes(n), off)
                with lock:
                    extents.append((off, n))
                budget -= n
            next_at += tick
            time.sleep(max(0.0, next_at - time.monotonic()))


def part2(folder: Path, seconds: float, rate_mb: float) -> None:
    root = Path(tempfile.mkdtemp(prefix="rpo-", dir=folder))
    pair = Pair(root)
    source = root / "source.img"
    with open(source, "wb") as f:
        for _ in range(1024):
            f.write(os.urandom(MiB))
    try:
        with pair.ps_client() as c:
            c.post("/v1/replications", pair.replication("rpo", str(source), "rpo/rpo.img",
                                                        interval=2))  # fmt: skip
        wait_initial(pair, "rpo")
        stop, lock = threading.Event(), threading.Lock()
        extents: list[tuple[int, int]] = []
        w = threading.Thread(
            target=writer, args=(source, int(rate_mb * 1e6), stop, extents, lock), daemon=True
        )
        w.start()
        lags: list[float] = []
        started = time.monotonic()
        next_feed = next_sample = started
        with pair.ps_client() as c:
            while time.monotonic() - started < seconds:
                now = time.monotonic()
                if now >= next_feed:
                    with lock:
                        batch, extents[:] = list(extents), []
                    if batch:
                        c.post("/v1/replications/rpo/dirty", {"extents": batch})
                    next_feed += 0.25
                if now >= next_sample:
                    status = c.get("/v1/replications/rpo")
                    if status["last_point"]:
                        lags.append(time.time() - status["last_point"]["time"])
                    next_sample += 0.5
                time.sleep(0.02)
            stop.set()
            w.join()
            with lock:
                batch = list(extents)
            if batch:
                c.post("/v1/replications/rpo/dirty", {"extents": batch})
            c.post("/v1/replications/rpo/points", {"tag": "final", "wait": 120})
            status = c.get("/v1/replications/rpo")
        lags.sort()
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        print(
            f"\nRPO over {seconds:.0f} s at {rate_mb:.0f} MB/s ({len(lags)} samples): "
            f"p50 {statistics.median(lags):.2f} s  p99 {p99:.2f} s  max {lags[-1]:.2f} s  "
            f"(target p99 < 10 s) {'PASS' if p99 < 10 else 'MISS'}; "
            f"sent {status['sent_bytes'] / MiB:.0f} MiB"
        )
        same = identical(source, pair.ds / "rpo" / "rpo.img")
        print(f"target equals source after the final point: {same}")
        assert same
    except BaseException:
        for service in (pair.ps, pair.mt):
            print(f"--- {service.log} (tail)\n{service.log.read_text()[-4000:]}", file=sys.stderr)
        raise
    finally:
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gib", type=float, default=4.0)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/vmdr-bench"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rpo-seconds", type=float, default=120.0)
    ap.add_argument("--rate-mb", type=float, default=20.0)
    ap.add_argument("--rpo-only", action="store_true")
    ap.add_argument("--skip-rpo", action="store_true")
    args = ap.parse_args()
    if not args.rpo_only:
        build(args.dir, int(args.size_gib * GiB), args.seed)
        part1(args.dir, args.rounds)
    if not args.skip_rpo:
        args.dir.mkdir(parents=True, exist_ok=True)
        part2(args.dir, args.rpo_seconds, args.rate_mb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
