"""Benchmark of the block engine against rsync and cp (warm page cache).

    .venv/bin/python bench/resync.py [--size-gib 4] [--dir DIR] [--rounds 3]
    .venv/bin/python bench/resync.py --sweep        # DiffResync at several block sizes
    .venv/bin/python bench/resync.py --hash-bench   # digest speed per block size
    .venv/bin/python bench/resync.py --worker-ab    # DiffResync with/without a worker

Builds (once; reused while size and seed match) a sparse image of about 60 %
random data in runs of 256 KiB-16 MiB and 40 % holes, and a stale copy with
1 % of its 64 KiB blocks overwritten at random (the true dirty map is kept).
Each round then runs, one after the other, on a fresh copy of the stale image:

    rsync      rsync --inplace --no-whole-file --stats SRC DST   (no fsync)
    resync     vmdr DiffResync SRC DST                            (+ fsync of DST)
    dirty      vmdr DirtyCopy SRC DST with the true dirty map     (+ fsync of DST)
    cp         cp --sparse=always SRC NEW && sync NEW             (fsync of NEW)
    fullcopy   vmdr FullCopy SRC NEW                              (+ fsync of NEW)

Before each run: the stale target is restored (its changed blocks written
back), ``sync``, a pause for writeback and discards to settle, and both files
are read once (warm cache). After each run the result is compared with
``cmp``. vmdr runs in a child process;
"op s" is the operation's own time, "proc s" the child's wall time including
Python start-up (about 0.3 s, mostly importing numpy). Peak memory is the
maximum RSS of the command (GNU time), and for vmdr also of its workers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
BS = 64 * KiB
FORMAT = 2  # bump when the image layout changes
SETTLE_SECONDS = 3.0


# -- the image pair -----------------------------------------------------------


def build(folder: Path, size: int, seed: int) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / "meta.json"
    want = {"size": size, "seed": seed, "format": FORMAT}
    if meta_path.exists():
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} == want and (folder / "stale.img").exists():
            return meta
    print(f"building {size / GiB:.1f} GiB image pair in {folder} ...", file=sys.stderr)
    rng = np.random.default_rng(seed)
    src = folder / "src.img"
    data = 0
    with open(src, "wb") as f:
        f.truncate(size)
        offset = 0
        while offset < size:
            length = min(int(rng.integers(4, 257)) * BS, size - offset)
            if rng.random() < 0.6:
                for pos in range(0, length, 16 * MiB):
                    n = min(16 * MiB, length - pos)
                    os.pwrite(f.fileno(), rng.bytes(n), offset + pos)
                data += length
            offset += length
    stale = folder / "stale.img"
    subprocess.run(["cp", "--sparse=always", str(src), str(stale)], check=True)
    nblocks = size // BS
    changed = np.sort(rng.choice(nblocks, nblocks // 100, replace=False))
    with open(stale, "r+b") as f:
        for block in changed.tolist():
            os.pwrite(f.fileno(), rng.bytes(BS), block * BS)
    np.save(folder / "dirty.npy", changed)
    os.sync()
    meta = want | {"data_bytes": data, "changed_blocks": int(changed.size)}
    meta_path.write_text(json.dumps(meta))
    return meta


def warm(*paths: Path) -> None:
    """Read the data of each file (not its holes) into the page cache, twice:
    the second pass is fast and marks every page recently used, so the
    machine's DAMON pageout (it reclaims pages idle for ~6 s) spares them."""
    for _ in range(2):
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                size, pos = os.fstat(fd).st_size, 0
                while pos < size:
                    try:
                        data = os.lseek(fd, pos, os.SEEK_DATA)
                    except OSError:
                        break
                    hole = os.lseek(fd, data, os.SEEK_HOLE)
                    for offset in range(data, hole, 16 * MiB):
                        os.pread(fd, min(16 * MiB, hole - offset), offset)
                    pos = hole
            finally:
                os.close(fd)


def identical(a: Path, b: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0


# -- one run of one method ------------------------------------------------------


def run_external(argv: list[str]) -> tuple[float, int, float, str]:
    """Wall seconds, peak RSS (KiB), CPU seconds (user + system, the command and
    the children it waited for; from GNU time) and stdout of a command."""
    with tempfile.NamedTemporaryFile("r") as usage:
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-o", usage.name, "-f", "%M %U %S", *argv],
            stdout=subprocess.PIPE,
            text=True,
        )
        seconds = time.perf_counter() - start
        if proc.returncode:
            raise SystemExit(f"{argv[0]} failed with {proc.returncode}")
        rss, user, system = usage.read().split()[-3:]
        return seconds, int(rss), float(user) + float(system), proc.stdout


def run_vmdr(op: str, src: Path, dst: Path, dirty: Path | None, block_size: int) -> dict[str, Any]:
    argv = [
        sys.executable,
        __file__,
        "--run-one",
        op,
        str(src),
        str(dst),
        "--block-size",
        str(block_size),
    ]
    if dirty is not None:
        argv += ["--dirty", str(dirty)]
    seconds, rss, cpu, out = run_external(argv)
    result: dict[str, Any] = json.loads(out)
    result["proc_seconds"] = seconds
    result["cpu_seconds"] = cpu
    result["peak_kib"] = max(rss, result["peak_kib"])  # the child and its workers
    return result


def run_one(op: str, src: str, dst: str, dirty: str | None, block_size: int) -> None:
    """In the child: run one vmdr operation and print its counters as JSON."""
    from vmdr.blocks import DiffResync, DirtyCopy, FullCopy, open_backend

    with open_backend(src) as s, open_backend(dst, "rw", create=True) as d:
        if op == "resync":
            counters = DiffResync(s, d, block_size=block_size).run()
        elif op == "dirty":
            assert dirty is not None
            blocks = np.load(dirty)
            ranges = [(int(b) * BS, BS) for b in blocks]
            counters = DirtyCopy(s, d, ranges, block_size=block_size).run()
        else:
            counters = FullCopy(s, d, block_size=block_size).run()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps(counters.to_dict() | {"peak_kib": max(own, kids)}))


# -- the comparison -----------------------------------------------------------


def restore_stale(folder: Path, work: Path) -> None:
    """Make ``work`` the stale image again. A previous run left it equal to
    the source, so only the changed blocks need writing back (cheap, and no
    gigabytes of writeback to disturb the next measurement)."""
    stale = folder / "stale.img"
    if not work.exists():
        subprocess.run(["cp", "--sparse=always", str(stale), str(work)], check=True)
        return
    with open(stale, "rb") as s, open(work, "r+b") as w:
        for block in np.load(folder / "dirty.npy").tolist():
            os.pwrite(w.fileno(), os.pread(s.fileno(), BS, block * BS), block * BS)


def method(name: str, folder: Path, block_size: int = BS) -> dict[str, Any]:
    src, work, new = (folder / n for n in ("src.img", "work.img", "new.img"))
    if name in ("rsync", "resync", "dirty"):
        restore_stale(folder, work)
        target = work
    else:
        new.unlink(missing_ok=True)
        target = new
    os.sync()
    time.sleep(SETTLE_SECONDS)  # let writeback and discards of the previous run finish
    warm(src, *([work] if target == work else []))
    row: dict[str, Any] = {"method": name}
    if name == "rsync":
        seconds, rss, cpu, out = run_external(
            ["rsync", "--inplace", "--no-whole-file", "--stats", str(src), str(work)]
        )
        literal = re.search(r"Literal data: ([\d,]+)", out)
        row |= {"seconds": seconds, "proc_seconds": seconds, "peak_kib": rss, "cpu_seconds": cpu}
        row["written"] = int(literal[1].replace(",", "")) if literal else -1
    elif name == "cp":
        seconds, rss, cpu, _ = run_external(
            ["sh", "-c", f"cp --sparse=always '{src}' '{new}' && sync '{new}'"]
        )
        row |= {"seconds": seconds, "proc_seconds": seconds, "peak_kib": rss, "written": -1}
        row["cpu_seconds"] = cpu
    else:
        op = {"resync": "resync", "dirty": "dirty", "fullcopy": "copy"}[name]
        dirty = folder / "dirty.npy" if name == "dirty" else None
        row |= run_vmdr(op, src, target, dirty, block_size)
    row["identical"] = identical(src, target)
    return row


def mib(row: dict[str, Any], key: str) -> str:
    return f"{row[key] / MiB:.1f}" if row.get(key, -1) >= 0 else "-"


def median_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(rows[0])
    for key in ("seconds", "proc_seconds", "peak_kib", "cpu_seconds"):
        out[key] = statistics.median(r[key] for r in rows)
    out["all_seconds"] = [round(r["seconds"], 3) for r in rows]
    out["identical"] = all(r["identical"] for r in rows)
    return out


def cpu_ticks() -> list[int]:
    """user, nice, system, idle, iowait, irq, softirq, steal from /proc/stat."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def compare(folder: Path, meta: dict[str, Any], rounds: int) -> int:
    names = ["rsync", "resync", "dirty", "cp", "fullcopy"]
    load_before, ticks_before = os.getloadavg()[0], cpu_ticks()
    rows: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names:
            rows[name].append(method(name, folder))
            print(f"round {r + 1} {name}: {rows[name][-1]['seconds']:.3f} s", file=sys.stderr)
    med = {n: median_rows(v) for n, v in rows.items()}
    changed = meta["changed_blocks"] * BS
    delta = [b - a for a, b in zip(ticks_before, cpu_ticks(), strict=True)]
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_before:.2f} before and "
        f"{os.getloadavg()[0]:.2f} after; over the whole benchmark the CPUs were "
        f"{100 * delta[3] / sum(delta):.0f} % idle, {100 * delta[4] / sum(delta):.0f} % iowait, "
        f"{100 * delta[7] / sum(delta):.0f} % stolen by the host"
    )
    print(
        f"\nimage {meta['size'] / GiB:.2f} GiB, data {meta['data_bytes'] / GiB:.2f} GiB, "
        f"changed {changed / MiB:.1f} MiB ({meta['changed_blocks']} blocks of 64 KiB); "
        f"median of {rounds} warm runs"
    )
    head = (
        f"{'method':9} {'op s':>7} {'proc s':>7} {'cpu s':>6} {'read MiB':>9} "
        f"{'written MiB':>11} {'zeroed MiB':>10} {'peak MiB':>8}  identical  op s of each run"
    )
    print(head)
    for n in names:
        m = med[n]
        print(
            f"{n:9} {m['seconds']:7.3f} {m['proc_seconds']:7.3f} {m['cpu_seconds']:6.2f} "
            f"{mib(m, 'read'):>9} "
            f"{mib(m, 'written'):>11} {mib(m, 'zeroed'):>10} {m['peak_kib'] / 1024:8.1f}  "
            f"{'yes' if m['identical'] else 'NO':9}  {m['all_seconds']}"
        )
    rs, res, dc, cp, fc = (med[n] for n in names)
    checks = [
        ("DiffResync >= 8x faster than rsync (op)", rs["seconds"] / res["seconds"], 8, ">="),
        ("DiffResync >= 8x faster than rsync (proc)", rs["seconds"] / res["proc_seconds"], 8, ">="),
        ("FullCopy+fsync <= 1.25x cp+sync (op)", fc["seconds"] / cp["seconds"], 1.25, "<="),
        ("FullCopy+fsync <= 1.25x cp+sync (proc)", fc["proc_seconds"] / cp["seconds"], 1.25, "<="),
        ("DirtyCopy >= 50x faster than rsync (op)", rs["seconds"] / dc["seconds"], 50, ">="),
        ("DirtyCopy >= 50x faster than rsync (proc)", rs["seconds"] / dc["proc_seconds"], 50, ">="),
        (
            "DiffResync written+zeroed <= 1.05x changed",
            (res["written"] + res["zeroed"]) / changed,
            1.05,
            "<=",
        ),
        (
            "DirtyCopy written+zeroed <= 1.05x changed",
            (dc["written"] + dc["zeroed"]) / changed,
            1.05,
            "<=",
        ),
        (
            "peak memory < 200 MiB (largest vmdr run)",
            max(res["peak_kib"], dc["peak_kib"], fc["peak_kib"]) / 1024,
            200,
            "<",
        ),
    ]
    print()
    failed = 0
    for label, value, target, how in checks:
        ok = {">=": value >= target, "<=": value <= target, "<": value < target}[how]
        failed += not ok
        print(f"{'PASS' if ok else 'MISS'}  {label}: {value:.2f} (target {how} {target})")
    if not all(m["identical"] for m in med.values()):
        print("FAIL  a result differs from the source")
        failed += 1
    return 1 if failed else 0


def sweep(folder: Path, meta: dict[str, Any]) -> None:
    changed = meta["changed_blocks"] * BS
    print(f"{'block':>6} {'op s':>7} {'written+zeroed MiB':>19} {'x changed':>9}")
    for bs in (16 * KiB, 64 * KiB, 256 * KiB, 1 * MiB):
        row = method("resync", folder, bs)
        moved = row["written"] + row["zeroed"]
        assert row["identical"]
        print(f"{bs // KiB:5}K {row['seconds']:7.3f} {moved / MiB:19.1f} {moved / changed:9.2f}")


def worker_ab(folder: Path, rounds: int) -> None:
    """DiffResync with the target hashed in a worker against all in one
    process, interleaved, in this process (no start-up cost)."""
    from vmdr.blocks import DiffResync, open_backend

    src, work = folder / "src.img", folder / "work.img"
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for parallel in (True, False):
            restore_stale(folder, work)
            os.sync()
            time.sleep(SETTLE_SECONDS)
            warm(src, work)
            with open_backend(str(src)) as s, open_backend(str(work), "rw") as d:
                times[parallel].append(DiffResync(s, d, parallel=parallel).run().seconds)
            assert identical(src, work)
    for parallel, label in ((True, "target in a worker"), (False, "one process")):
        runs = [round(t, 3) for t in times[parallel]]
        print(f"DiffResync, {label:18} median {statistics.median(runs):.3f} s  {runs}")


def hash_bench() -> None:
    """Digest throughput on 256 MiB of random data (not cache-resident)."""
    import xxhash

    algos: dict[str, Any] = {
        "xxh3-128": xxhash.xxh3_128_digest,
        "xxh3-64": xxhash.xxh3_64_digest,
        "sha256": lambda b: hashlib.sha256(b).digest(),
        "blake2b": lambda b: hashlib.blake2b(b).digest(),
    }
    try:
        import blake3  # type: ignore[import-not-found]

        algos["blake3"] = lambda b: blake3.blake3(b).digest()
    except ImportError:
        pass
    data = memoryview(np.random.default_rng(0).bytes(256 * MiB))
    sizes = (4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, 1 * MiB)
    print(f"{'GB/s':10}" + "".join(f"{s // KiB:>8}K" for s in sizes))
    for name, fn in algos.items():
        cells = []
        for bs in sizes:
            start = time.perf_counter()
            for i in range(0, len(data), bs):
                fn(data[i : i + bs])
            cells.append(len(data) / (time.perf_counter() - start) / 1e9)
        print(f"{name:10}" + "".join(f"{c:9.2f}" for c in cells))


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size-gib", type=float, default=4.0)
    p.add_argument("--dir", type=Path, default=Path("/tmp/vmdr-bench"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sweep", action="store_true", help="DiffResync at 16K..1M block sizes")
    p.add_argument("--hash-bench", action="store_true", help="digest speed per block size")
    p.add_argument("--worker-ab", action="store_true", help="DiffResync with and without a worker")
    p.add_argument("--run-one", nargs=3, metavar=("OP", "SRC", "DST"), help=argparse.SUPPRESS)
    p.add_argument("--dirty", help=argparse.SUPPRESS)
    p.add_argument("--block-size", type=int, default=BS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.run_one:
        run_one(*args.run_one, args.dirty, args.block_size)
        return 0
    if args.hash_bench:
        hash_bench()
        return 0
    for tool in ("rsync", "cp", "cmp"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed")
    size = int(args.size_gib * GiB) // BS * BS
    meta = build(args.dir, size, args.seed)
    if args.sweep:
        sweep(args.dir, meta)
        return 0
    if args.worker_ab:
        worker_ab(args.dir, args.rounds)
        return 0
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    return compare(args.dir, meta, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
