"""Page-blob throughput through vmdr's backend versus plain azure-storage-blob calls.

    .venv/bin/python bench/pageblob.py [--lab-dir DIR] [--size-mib 256] [--rounds 3] [--json]

Against the lab's Azurite (HTTPS, the lab's key). Without ``--lab-dir`` a lab
is started in a temporary folder (``Lab.up(populate=False)``) and stopped at
the end. Each round writes ``--size-mib`` of random bytes into a fresh page
blob and reads them back, once each way:

    write vmdr   PageBlobBackend.write in 1 MiB pieces (combined into 4 MiB
                 Put Page calls, 8 in flight), then flush
    write sdk    BlobClient.upload_page, 4 MiB per call, one after the other
    read vmdr    PageBlobBackend.readinto in pieces of ``preferred_read``
                 (4 MiB: two parallel ranged GETs each), and in 256 KiB pieces
                 (the block engine's old read size; over a quarter of the blob)
    read sdk     BlobClient.download_blob(offset, 4 MiB).readall(), one after
                 the other, and in 256 KiB pieces (a quarter of the blob)

The best round counts (the machine is shared with Azurite, which is one
Node.js process). MB/s are 10^6 bytes per second; ratio = vmdr / sdk.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from vmdr.lab.lab import Lab
from vmdr.lab.services import STORAGE_ACCOUNTS_FILE

MiB = 1 << 20
PUT = 4 * MiB
SMALL = 256 << 10


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _vmdr_write(disk: Any, data: bytes) -> None:
    for pos in range(0, len(data), MiB):
        disk.write(pos, data[pos : pos + MiB])
    disk.flush()


def _vmdr_read(disk: Any, length: int, piece: int) -> None:
    buf = bytearray(piece)
    for pos in range(0, length, piece):
        disk.readinto(pos, buf)


def _sdk_write(blob: Any, data: bytes) -> None:
    for pos in range(0, len(data), PUT):
        blob.upload_page(data[pos : pos + PUT], offset=pos, length=PUT)


def _sdk_read(blob: Any, length: int, piece: int) -> None:
    for pos in range(0, length, piece):
        blob.download_blob(offset=pos, length=piece).readall()


def run(account: str, size: int, rounds: int) -> dict[str, float]:
    from vmdr.providers.azure import pageblob
    from vmdr.providers.azure.blobs import blob_client

    data = os.urandom(size)
    small = max(size // 4, SMALL)  # 256 KiB reads are slow: a quarter of the disk is enough
    best: dict[str, float] = {}

    def keep(name: str, length: int, fn: Callable[[], None]) -> None:
        rate = length / _timed(fn) / 1e6
        best[name] = max(best.get(name, 0.0), rate)

    for _ in range(rounds):
        url_vmdr = f"pageblob://{account}/bench/{uuid.uuid4().hex}"
        url_sdk = f"pageblob://{account}/bench/{uuid.uuid4().hex}"
        pageblob.create(url_vmdr, size)
        pageblob.create(url_sdk, size)
        try:
            with pageblob.open_pageblob(url_vmdr, "rw") as disk:
                keep("write vmdr", size, partial(_vmdr_write, disk, data))
                keep("read vmdr 4MiB", size, partial(_vmdr_read, disk, size, disk.preferred_read))
                keep("read vmdr 256KiB", small, partial(_vmdr_read, disk, small, SMALL))
            service, blob, _ = blob_client(url_sdk)
            with service:
                keep("write sdk", size, partial(_sdk_write, blob, data))
                keep("read sdk 4MiB", size, partial(_sdk_read, blob, size, PUT))
                keep("read sdk 256KiB", small, partial(_sdk_read, blob, small, SMALL))
                back = blob.download_blob(offset=0, length=MiB).readall()
                assert back == data[:MiB], "the SDK read back other bytes"
        finally:
            pageblob.delete(url_vmdr)
            pageblob.delete(url_sdk)
    return best


def report(best: dict[str, float], size: int, rounds: int) -> list[str]:
    lines = [f"page blob on Azurite, {size // MiB} MiB, best of {rounds} round(s), MB/s:"]
    pairs = [
        (
            "write",
            "write vmdr",
            "write sdk",
            "1 MiB writes -> 4 MiB Put Page x8 | upload_page 4 MiB",
        ),
        ("read 4 MiB", "read vmdr 4MiB", "read sdk 4MiB", "readinto 4 MiB | download_blob 4 MiB"),
        ("read 256 KiB", "read vmdr 256KiB", "read sdk 256KiB", "readinto | download_blob"),
    ]
    for label, mine, theirs, how in pairs:
        ratio = best[mine] / best[theirs]
        lines.append(
            f"  {label:<13} vmdr {best[mine]:7.1f}   sdk {best[theirs]:7.1f}   "
            f"ratio {ratio:4.2f}   ({how})"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab-dir", type=Path, help="a running lab (default: start one)")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size = args.size_mib * MiB
    if size % PUT:
        parser.error("--size-mib must be a multiple of 4")

    started: Lab | None = None
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if args.lab_dir is not None:
        lab = Lab(args.lab_dir)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="vmdr-bench-lab-")
        lab = started = Lab(Path(tmp.name))
        print(f"starting a lab in {tmp.name} ...", file=sys.stderr)
        lab.up(populate=False)
    try:
        os.environ["VMDR_STORAGE_ACCOUNTS"] = str(lab.directory / STORAGE_ACCOUNTS_FILE)
        account = lab.credentials()["azurite"]["account"]
        best = run(account, size, args.rounds)
    finally:
        if started is not None:
            started.down()
        if tmp is not None:
            tmp.cleanup()
    if args.json:
        out: dict[str, Any] = {"size": size, "rounds": args.rounds, "mb_per_s": best}
        print(json.dumps(out, indent=2))
    else:
        print("\n".join(report(best, size, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
