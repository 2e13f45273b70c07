"""Speed of the wire codec, and what zstd costs and saves, per kind of data.

    .venv/bin/python bench/frames.py [--mib 64] [--levels 3,1,-1,-3] [--policies]

Data: random bytes (an encrypted or already-compressed disk), typical disk
content (text and binaries from /usr, some of them compressed), "mixed"
(regions of 2-16 MiB, each random or typical) and zeros. Two tables:

1. zstd alone at each level, per run size: compress and decompress MB/s and
   the compressed/raw ratio (what ``vmdr.transport.compression`` chose its
   level from).
2. With ``--policies``: when to try zstd, modelled over the runs (compression
   work only, ms per MB, and wire/raw): every frame, skip M frames after N
   misses, and the probe that ``Compressor`` implements.
3. The codec end to end (``Encoder`` with framing, xxh3 and the join into one
   write per frame, as ``roles.sender`` does; ``FrameDecoder``), for 64 KiB,
   1 MiB and 4 MiB DataRuns: compression off, zstd level 1 tried on every
   frame, and the adaptive policy (probe after misses). Prints encode and
   decode MB/s and wire/raw.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import zstandard

from vmdr.blocks.messages import DataRun
from vmdr.transport import frames
from vmdr.transport.compression import PROBE_AFTER, WORTH, Compressor

MiB = 1 << 20
RUNS = (64 << 10, MiB, 4 * MiB)


def typical(total: int) -> bytes:
    """Real files from /usr/share and /usr/lib, concatenated, as disk content."""
    out = bytearray()
    for root in ("/usr/share/doc", "/usr/lib/python3", "/usr/share/locale", "/usr/bin"):
        for dirpath, _, files in os.walk(root):
            for name in files:
                try:
                    out += Path(dirpath, name).read_bytes()[: 4 * MiB]
                except OSError:
                    continue
                if len(out) >= total:
                    return bytes(out[:total])
    return bytes((out * (total // max(len(out), 1) + 1))[:total])


def mixed(total: int, typ: bytes, seed: int = 1) -> bytes:
    """Regions of 2-16 MiB, each random or typical, as on a disk holding both."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < total:
        n = rng.choice((2, 4, 8, 16)) * MiB
        start = rng.randrange(0, max(len(typ) - n, 1))
        out += os.urandom(n) if rng.random() < 0.5 else typ[start : start + n]
    return bytes(out[:total])


def runs(data: bytes, size: int) -> Iterator[DataRun]:
    view = memoryview(data)
    for pos in range(0, len(data), size):
        yield DataRun(pos, view[pos : pos + size])


def levels_table(kinds: dict[str, bytes], levels: list[int]) -> None:
    zstandard.ZstdCompressor(level=1).compress(kinds["typical"][:MiB])  # warm up
    print("zstd alone: compress/decompress MB/s, compressed/raw")
    print(f"{'data':8s} {'run':>6s} " + " ".join(f"{'level ' + str(lv):>22s}" for lv in levels))
    for name, data in kinds.items():
        if name == "zeros":
            continue
        for size in RUNS:
            chunks = [data[p : p + size] for p in range(0, len(data), size)]
            cells = []
            for level in levels:
                c, d = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
                tc = td = 1e9
                for _ in range(2):
                    t0 = time.perf_counter()
                    packed = [c.compress(x) for x in chunks]
                    t1 = time.perf_counter()
                    for p in packed:
                        d.decompress(p)
                    tc, td = min(tc, t1 - t0), min(td, time.perf_counter() - t1)
                mb, ratio = len(data) / 1e6, sum(map(len, packed)) / len(data)
                cells.append(f"{mb / tc:6.0f}/{mb / td:6.0f} {ratio:6.3f}")
            print(f"{name:8s} {size >> 10:5d}K " + " ".join(f"{c:>22s}" for c in cells))


def skipping(chunks: list[memoryview], after: int, skip: int) -> int:
    """Wire bytes when zstd is not tried for ``skip`` frames after ``after`` misses."""
    c, out, misses, left = zstandard.ZstdCompressor(level=1), 0, 0, 0
    for x in chunks:
        if left:
            left, out = left - 1, out + len(x)
            continue
        n = len(c.compress(x))
        if n < WORTH * len(x):
            misses, out = 0, out + n
            continue
        misses, out = misses + 1, out + len(x)
        if misses >= after:
            left, misses = skip, 0
    return out


def probing(chunks: list[memoryview], after: int) -> int:
    c, head, out = Compressor(probe_after=after), bytes(8), 0
    for x in chunks:
        packed = c.compress(head, x)
        out += len(x) if packed is None else len(packed) - 8
    return out


POLICIES: dict[str, Callable[[list[memoryview]], int]] = {
    "every frame": lambda ch: skipping(ch, 1 << 62, 0),
    "skip 32 after 4": lambda ch: skipping(ch, 4, 32),
    "skip 8 after 2": lambda ch: skipping(ch, 2, 8),
    "probe after 2": lambda ch: probing(ch, PROBE_AFTER),
}


def policy_table(kinds: dict[str, bytes]) -> None:
    print("\nwhen to try zstd: ms of compression per MB, wire/raw")
    print(f"{'data':8s} {'run':>6s} " + " ".join(f"{p:>16s}" for p in POLICIES))
    for name in ("random", "typical", "mixed"):
        data = kinds[name]
        for size in RUNS[:2]:
            chunks = [memoryview(data)[p : p + size] for p in range(0, len(data), size)]
            cells = []
            for policy in POLICIES.values():
                best, out = 1e9, 0
                for _ in range(2):
                    t0 = time.perf_counter()
                    out = policy(chunks)
                    best = min(best, time.perf_counter() - t0)
                cells.append(f"{best * 1e3 / (len(data) / 1e6):6.3f} {out / len(data):6.3f}")
            print(f"{name:8s} {size >> 10:5d}K " + " ".join(f"{c:>16s}" for c in cells))


def measure(data: bytes, run_size: int, mode: str) -> tuple[float, float, float]:
    enc = frames.Encoder(compress=mode != "off")
    if mode == "zstd-all":
        enc.compressor = Compressor(probe_after=1 << 62)
    t0 = time.perf_counter()
    wire = [b"".join(enc.encode(run)) for run in runs(data, run_size)]
    t1 = time.perf_counter()
    dec = frames.FrameDecoder()
    n = sum(len(m.data) for chunk in wire for m in dec.feed(chunk) if isinstance(m, DataRun))
    t2 = time.perf_counter()
    assert n == len(data)
    size = len(data) / 1e6
    return size / (t1 - t0), size / (t2 - t1), sum(map(len, wire)) / len(data)


def codec_table(kinds: dict[str, bytes]) -> None:
    print("\ncodec: encode MB/s, decode MB/s, wire/raw")
    print(f"{'data':8s} {'run':>6s} " + " ".join(f"{m:>20s}" for m in MODES))
    for name, data in kinds.items():
        for size in RUNS:
            cells = []
            for mode in MODES:
                e, d, r = max((measure(data, size, mode) for _ in range(2)), key=lambda x: x[0])
                cells.append(f"{e:5.0f} {d:6.0f} {r:6.3f}")
            print(f"{name:8s} {size >> 10:5d}K " + " ".join(f"{c:>20s}" for c in cells))


MODES = ("off", "zstd-all", "adaptive")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=64, help="MiB of each kind of data")
    ap.add_argument("--levels", default="3,1,-1,-3", help="zstd levels for the first table")
    ap.add_argument("--policies", action="store_true", help="also model when to try zstd")
    args = ap.parse_args()
    total = args.mib * MiB
    typ = typical(total)
    kinds = {
        "random": os.urandom(total),
        "typical": typ,
        "mixed": mixed(total, typ),
        "zeros": bytes(total),
    }
    levels_table(kinds, [int(x) for x in args.levels.split(",")])
    if args.policies:
        policy_table(kinds)
    codec_table(kinds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
