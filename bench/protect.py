"""One protect cycle with changed block tracking against one without, side by
side on the same disk and page blob.

    .venv/bin/python bench/protect.py [--gib 8] [--changed 0.01] [--json]

A lab is started without VMs (``Lab.up(populate=False)``: the vCenter
simulator and Azurite). A VM with one ``--gib`` disk is created through
vCenter, filled like the block engine's image (60 % of the 4 MiB regions
random, the rest holes) and replicated whole into a page blob. Then, twice,
``--changed`` of its 64 KiB blocks (random ones) are written by the lab's
guest writer, and one cycle runs the way ``sync_disks`` runs it (VM
snapshot, ``QueryChangedDiskAreas``, read, snapshot removed):

    cbt           the areas changed block tracking names (``DirtyCopy``)
    differential  the whole disk compared with the blob (``DiffResync``),
                  as every cycle did before tracking

Each prints the bytes it read (disk and blob), the bytes written, and its
wall time. The differential cycle runs second, so it also checks the cbt
cycle: had tracking missed a change, the differential cycle would write it
(its written bytes would exceed the second change set's).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from vmdr.blocks.copy import DirtyCopy
from vmdr.blocks.resync import DiffResync
from vmdr.blocks.urls import open_backend
from vmdr.lab import guest
from vmdr.lab.lab import Lab, vcenter_endpoint
from vmdr.lab.services import STORAGE_ACCOUNTS_FILE
from vmdr.providers.vsphere import cbt
from vmdr.providers.vsphere.control import NewDisk, create_vm, delete_vm, vmware_disk_uuid
from vmdr.providers.vsphere.session import session

MiB = 1 << 20
BLOCK = 64 << 10
VM = "bench-protect"
FILE = f"[vmfs-01] {VM}/{VM}.vmdk"


def fill(flat: Path, size: int) -> None:
    """60 % of the 4 MiB regions random, the rest holes (untracked: before CBT)."""
    rng = random.Random(7)
    with open(flat, "r+b") as f:
        for offset in range(0, size, 4 * MiB):
            if rng.random() < 0.6:
                f.seek(offset)
                f.write(rng.randbytes(min(4 * MiB, size - offset)))


def change(flat: Path, size: int, share: float, seed: int) -> int:
    """Write ``share`` of the 64 KiB blocks, as the guest would; bytes changed."""
    rng = random.Random(seed)
    blocks = rng.sample(range(size // BLOCK), max(1, int(size // BLOCK * share)))
    for block in blocks:
        guest.write(flat, block * BLOCK, rng.randbytes(BLOCK))
    return len(blocks) * BLOCK


def cycle(si: Any, vm: Any, flat: Path, blob: str, since: str, name: str) -> dict[str, Any]:
    """One cycle as sync_disks runs it; what it read and wrote, and how long."""
    start = time.perf_counter()
    snap = cbt.cycle_snapshot(si, vm, name, False, {FILE: since})
    areas = snap.changed[FILE]
    asked = time.perf_counter()
    try:
        with open_backend(f"file://{flat}") as src, open_backend(blob, "rw") as dst:
            op = DiffResync(src, dst) if areas is None else DirtyCopy(src, dst, areas)
            counters = op.run()
            dst.flush()
        copied = time.perf_counter()
    finally:
        cbt.remove_stale_snapshots(si, vm, cbt.SNAPSHOT_PREFIX)
    seconds = time.perf_counter() - start
    return {
        "read": counters.read,
        "written": counters.written + counters.zeroed,
        "seconds": round(seconds, 3),
        "vcenter_seconds": round(seconds - (copied - asked), 3),  # snapshot, query, removal
        "copy_seconds": round(copied - asked, 3),
        "areas": None if areas is None else len(areas),
        "change_id": snap.change_ids[FILE],
    }


def run(lab: Lab, size: int, share: float) -> dict[str, Any]:
    from vmdr.providers.azure import pageblob

    account = lab.credentials()["azurite"]["account"]
    state = lab.state()
    assert state is not None
    stores = state.service("vcenter").details["topology"]["datastores"]
    vmfs = Path(next(d["path"] for d in stores if d["name"] == "vmfs-01"))
    blob = f"pageblob://{account}/bench/{uuid.uuid4().hex}"
    with session(vcenter_endpoint(lab.directory)) as si:
        vm = create_vm(si, VM, "esx-01", "vmfs-01", [NewDisk(size, vmware_disk_uuid())])
        try:
            flat = vmfs / VM / f"{VM}-flat.vmdk"
            fill(flat, size)
            pageblob.create(blob, size)
            print("initial replication ...", file=sys.stderr)
            first = cycle(si, vm, flat, blob, "", "initial")
            changed_cbt = change(flat, size, share, seed=1)
            print("cbt cycle ...", file=sys.stderr)
            with_cbt = cycle(si, vm, flat, blob, first["change_id"], "cbt")
            changed_diff = change(flat, size, share, seed=2)
            print("differential cycle ...", file=sys.stderr)
            differential = cycle(si, vm, flat, blob, "", "differential")
        finally:
            delete_vm(si, vm)
            pageblob.delete(blob)
    return {
        "size": size,
        "initial": first,
        "cbt": {**with_cbt, "changed": changed_cbt},
        "differential": {**differential, "changed": changed_diff},
    }


def report(r: dict[str, Any]) -> list[str]:
    c, d = r["cbt"], r["differential"]
    lines = [f"one protect cycle, {r['size'] / 2**30:.0f} GiB disk, 1 page blob on Azurite:"]
    for name, x in (("cbt", c), ("differential", d)):
        lines.append(
            f"  {name:<13} changed {x['changed'] / MiB:8.1f} MiB   read {x['read'] / MiB:9.1f} MiB"
            f"   written {x['written'] / MiB:8.1f} MiB   {x['seconds']:7.2f} s"
            f" (vCenter {x['vcenter_seconds']:.2f} s, copy {x['copy_seconds']:.2f} s)"
        )
    lines.append(
        f"  read/changed with cbt {c['read'] / c['changed']:.3f}   "
        f"differential/cbt time {d['seconds'] / c['seconds']:.1f}x   "
        f"differential wrote {d['written'] / d['changed']:.3f} x its change set "
        "(> 1: the cbt cycle missed something)"
    )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=8.0)
    parser.add_argument("--changed", type=float, default=0.01, help="share of 64 KiB blocks")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size = int(args.gib * 1024) * MiB
    with tempfile.TemporaryDirectory(prefix="vmdr-bench-protect-", dir="/var/tmp") as tmp:
        lab = Lab(Path(tmp))
        print(f"starting a lab in {tmp} ...", file=sys.stderr)
        lab.up(populate=False)
        try:
            os.environ["VMDR_STORAGE_ACCOUNTS"] = str(lab.directory / STORAGE_ACCOUNTS_FILE)
            result = run(lab, size, args.changed)
        finally:
            lab.down()
    print(json.dumps(result, indent=2) if args.json else "\n".join(report(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
