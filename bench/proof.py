"""The failback proof, computed by the roles, against `cmp` of the same two
files on one machine.

    .venv/bin/python bench/proof.py [--gib 1]

A real process server and master target (loopback TLS) as the test pair
runs them: the source disk is replicated into a disk "attached" to the
master target (a file its by-id folder names), then the process server's
proof (``POST/GET /v1/replications/{id}/proof``: it hashes the source, the
master target streams the digests of its disk) is timed against
``cmp SOURCE TARGET`` (both files read here, no network, no hashing: the
least a byte-for-byte comparison can do). The disk is 60 % random data, the
rest holes. Prints both times and the ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from vmdr.lab.pair import Pair
from vmdr.providers.vsphere.control import vmware_disk_uuid

MiB = 1 << 20


def make_disk(path: Path, size: int) -> None:
    """60 % of the 4 MiB regions random, the rest holes."""
    import random

    rng = random.Random(7)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset in range(0, size, 4 * MiB):
            if rng.random() < 0.6:
                f.seek(offset)
                f.write(rng.randbytes(min(4 * MiB, size - offset)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=1.0)
    args = parser.parse_args()
    size = int(args.gib * 1024) * MiB
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        root = Path(tmp)
        source, device = root / "source.img", root / "device-flat.vmdk"
        make_disk(source, size)
        with open(device, "wb") as f:
            f.truncate(size)
        pair = Pair(root / "pair")
        try:
            disk_uuid = vmware_disk_uuid()
            pair.attach(device, disk_uuid)
            with pair.ps_client() as c:
                c.post("/v1/replications", pair.device_replication("r1", str(source), disk_uuid))
            pair.wait("r1", lambda s: bool(s.get("initial_done")), timeout=600)
            started = time.monotonic()
            with pair.ps_client() as c:
                status = c.post("/v1/replications/r1/proof")
                while status["state"] == "running":
                    time.sleep(0.05)
                    status = c.get("/v1/replications/r1/proof")
            proof = time.monotonic() - started
            assert status["state"] == "done" and status["result"]["equal"], status
        finally:
            pair.stop()
        started = time.monotonic()
        subprocess.run(["cmp", str(source), str(device)], check=True)
        baseline = time.monotonic() - started
    print(f"disk {size // MiB} MiB (60 % data): proof by the roles {proof:.2f} s, "
          f"cmp {baseline:.2f} s, ratio {baseline / proof:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
