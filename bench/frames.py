"""Speed of the wire codec, and what zstd costs and saves, per kind of data.

    .venv/bin/python bench/frames.py [--mib 256]

For random bytes (an encrypted or already-compressed disk), typical disk
content (text and binaries from /usr, zero-padded), and all-zero data, it
encodes then decodes --mib MiB as 64 KiB and 4 MiB DataRuns: with compression
off, with zstd level 1 on every frame (``--no-skip``), and with the adaptive
policy of ``vmdr.transport.frames`` (send raw what does not shrink, stop
trying after a streak). Prints MB/s for encode and decode and the wire ratio.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from pathlib import Path

from vmdr.blocks.messages import DataRun
from vmdr.transport import frames

MiB = 1 << 20


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


def runs(data: bytes, size: int) -> Iterator[DataRun]:
    for pos in range(0, len(data), size):
        yield DataRun(pos, data[pos : pos + size])


def measure(data: bytes, run_size: int, compress: bool, skip: bool) -> tuple[float, float, float]:
    old = frames.SKIP_AFTER
    if not skip:
        frames.SKIP_AFTER = 1 << 30
    try:
        enc = frames.Encoder(compress=compress)
        t0 = time.perf_counter()
        wire = [b"".join(enc.encode(run)) for run in runs(data, run_size)]
        t1 = time.perf_counter()
        dec = frames.FrameDecoder()
        n = sum(len(m.data) for chunk in wire for m in dec.feed(chunk))  # type: ignore[union-attr]
        t2 = time.perf_counter()
    finally:
        frames.SKIP_AFTER = old
    assert n == len(data)
    size = len(data) / 1e6
    return size / (t1 - t0), size / (t2 - t1), sum(map(len, wire)) / len(data)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=256)
    args = ap.parse_args()
    total = args.mib * MiB
    kinds = {
        "random": os.urandom(total),
        "typical": typical(total),
        "zeros": bytes(total),
    }
    print(f"{'data':8s} {'run':>6s} {'mode':10s} {'encode MB/s':>12s} {'decode MB/s':>12s} "
          f"{'wire/raw':>9s}")  # fmt: skip
    for name, data in kinds.items():
        for run_size in (64 << 10, 4 * MiB):
            for mode, compress, skip in (
                ("off", False, True),
                ("zstd-all", True, False),
                ("adaptive", True, True),
            ):
                e, d, r = measure(data, run_size, compress, skip)
                print(f"{name:8s} {run_size >> 10:5d}K {mode:10s} {e:12.0f} {d:12.0f} {r:9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
