"""`make demo`: start the embedded lab and run the main job that exists today.

It says plainly what it did and what vmdr cannot do yet.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vmdr.lab import process
from vmdr.lab.lab import Lab, vcenter_endpoint
from vmdr.lab.state import load_inventory
from vmdr.model.errors import VmdrError
from vmdr.transport.client import ServiceClient

console = Console(width=None if sys.stdout.isatty() else 140)


def ensure_lab(lab: Lab) -> None:
    state = lab.state()
    if state and all(process.is_alive(s.process) for s in state.services):
        console.print(f"[bold]1.[/] reusing the lab already running in {lab.directory}")
        return
    if state:
        lab.down()
    started = time.monotonic()
    lab.up()
    console.print(
        f"[bold]1.[/] started the lab in {lab.directory} in {time.monotonic() - started:.1f} s: "
        "vCenter simulator (TLS), Azurite (HTTPS), BIND (TSIG)"
    )


def show_discovery(lab: Lab) -> None:
    from pyVmomi import vim

    from vmdr.providers.vsphere.session import objects_of_type, retrieve, session

    table = Table(title="on-premises inventory, read through the vSphere API")
    for col in ("VM", "host", "datastore", "guest", "power", "disk.enableUUID", "snapshots"):
        table.add_column(col)
    with session(vcenter_endpoint(lab.directory)) as si:
        for vm in sorted(objects_of_type(si, vim.VirtualMachine), key=lambda v: v.name):
            p = retrieve(
                si,
                vm,
                ["name", "runtime.host", "datastore", "config.guestId", "runtime.powerState",
                 "config.extraConfig", "snapshot"],
            )  # fmt: skip
            values = [
                o.value for o in p.get("config.extraConfig", []) if o.key == "disk.enableUUID"
            ]
            snaps = p["snapshot"].rootSnapshotList if "snapshot" in p else []
            table.add_row(
                p["name"],
                p["runtime.host"].name,
                ", ".join(d.name for d in p["datastore"]),
                p["config.guestId"],
                p["runtime.powerState"],
                values[-1] if values else "(absent)",
                str(len(snaps)),
            )
    console.print("[bold]2.[/] discovered the on-premises site:")
    console.print(table)


@dataclass(frozen=True)
class Replica:
    disk: str
    url: str
    capacity: int
    sent: int
    skipped_zero: int
    seconds: float
    equal: bool


def initial_replication(lab: Lab, vm_name: str) -> list[Replica]:
    """Copy every disk of one VM to a page blob in the cloud site, then prove it equal."""
    from vmdr.blocks import FullCopy, Verify, open_backend
    from vmdr.lab.services import STORAGE_ACCOUNTS_FILE

    os.environ["VMDR_STORAGE_ACCOUNTS"] = str(lab.directory / STORAGE_ACCOUNTS_FILE)
    account = lab.credentials()["azurite"]["account"]
    vm = next(v for v in load_inventory(lab.directory)["vms"] if v["name"] == vm_name)
    results = []
    for disk in vm["disks"]:
        url = f"pageblob://{account}/replicas/{vm_name}-disk{disk['unit']}"
        with (
            open_backend(disk["flat_path"]) as src,
            open_backend(url, "rw", create=True) as dst,
        ):
            copied = FullCopy(src, dst).run()
            dst.flush()
            verified = Verify(src, dst).run()
        results.append(
            Replica(
                disk["file"],
                url,
                disk["capacity"],
                copied.sent,
                copied.skipped_zero,
                copied.seconds,
                verified.equal,
            )
        )
    mib = 1 << 20
    table = Table(title=f"initial replication of {vm_name} to the cloud site (Azurite page blobs)")
    for col in ("disk", "replica", "size MiB", "sent MiB", "holes skipped MiB", "MB/s", "equal"):
        table.add_column(col)
    for r in results:
        table.add_row(
            escape(r.disk), r.url, f"{r.capacity / mib:.0f}", f"{r.sent / mib:.0f}",
            f"{r.skipped_zero / mib:.0f}", f"{r.sent / 1e6 / max(r.seconds, 1e-9):.0f}",
            "yes" if r.equal else "[red]NO[/]",
        )  # fmt: skip
    console.print(f"[bold]3.[/] replicated {vm_name}'s disks to the cloud site and verified them:")
    console.print(table)
    return results


def _service_client(lab: Lab, name: str) -> ServiceClient:
    state = lab.state()
    assert state is not None
    record = state.service(name)
    token = lab.credentials()[name]["token"]
    return ServiceClient(name, record.url, Path(record.details["ca"]), token, timeout=120)


def _cloud_writes(url: str, count: int, seed: int) -> list[list[int]]:
    """What the failed-over VM does in the cloud: write some 64 KiB blocks."""
    import random

    from vmdr.blocks import open_backend

    rnd = random.Random(seed)
    extents = []
    with open_backend(url, "rw") as disk:
        blocks = disk.size() // (64 << 10)
        for block in rnd.sample(range(blocks), count):
            disk.write(block * (64 << 10), rnd.randbytes(64 << 10))
            extents.append([block * (64 << 10), 64 << 10])
        disk.flush()
    return extents


def replicate_back(lab: Lab, vm_name: str, replica: Replica) -> bool:
    """Cloud disk -> process server -> master target -> the original on-prem
    disk, differentially; then one change set with a tagged recovery point."""
    from vmdr.blocks import Verify, open_backend

    vm = next(v for v in load_inventory(lab.directory)["vms"] if v["name"] == vm_name)
    disk = next(d for d in vm["disks"] if d["file"] == replica.disk)
    datastore, _, rel = disk["file"].partition("] ")
    datastore = datastore.lstrip("[")
    flat = rel.replace(".vmdk", "-flat.vmdk")
    repl = f"demo-{vm_name}-disk{disk['unit']}"
    seed = int(time.time())
    changed = _cloud_writes(replica.url, 40, seed)
    ps = _service_client(lab, "process-server")
    mt = _service_client(lab, "master-target")
    with ps, mt:
        if any(r["id"] == repl for r in ps.get("/v1/replications")):
            ps.delete(f"/v1/replications/{repl}", params={"forget_target": "true"})
        started = time.monotonic()
        ps.post("/v1/replications", {
            "id": repl, "source": replica.url, "datastore": datastore, "path": flat,
            "initial": "diff", "interval": 3600,
        })  # fmt: skip
        while not (status := ps.get(f"/v1/replications/{repl}"))["initial_done"]:
            if status["error"] and time.monotonic() - started > 60:
                console.print(f"[bold red]replication failed: {status['error']}[/]")
                return False
            time.sleep(0.1)
        seconds = time.monotonic() - started
        with open_backend(replica.url) as a, open_backend(disk["flat_path"]) as b:
            equal = Verify(a, b).run().equal
        more = _cloud_writes(replica.url, 8, seed + 1)
        ps.post(f"/v1/replications/{repl}/dirty", {"extents": more})
        point = ps.post(f"/v1/replications/{repl}/points", {"tag": "demo", "wait": 60})
        with open_backend(replica.url) as a, open_backend(disk["flat_path"]) as b:
            equal_after = Verify(a, b).run().equal
        points = mt.get(f"/v1/disks/{repl}/points")
    mib = 1 << 20
    console.print(
        f"[bold]4.[/] the cloud disk took {len(changed)} writes; the lab's process server "
        f"(cloud side) resynchronised it onto the original {escape(replica.disk)} through the "
        f"master target (on-premises) in {seconds:.1f} s, sending "
        f"{status['sent_bytes'] / mib:.1f} MiB of {replica.capacity / mib:.0f} MiB "
        f"(differential: both sides hashed, only differing blocks crossed TLS); equal: "
        f"{'yes' if equal else '[red]NO[/]'}.\n"
        f"   then {len(more)} more cloud writes went over as one change set with the "
        f"recovery point 'demo' (delivered: {point.get('delivered')}); equal: "
        f"{'yes' if equal_after else '[red]NO[/]'}; the master target holds "
        f"{len(points)} recovery points for this disk."
    )
    return equal and equal_after and bool(point.get("delivered"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".vmdr-lab"))
    args = parser.parse_args()
    lab = Lab(args.dir)
    try:
        ensure_lab(lab)
        show_discovery(lab)
        results = initial_replication(lab, "web-01")
        if not all(r.equal for r in results):
            console.print("[bold red]a replica differs from its source disk[/]")
            return 1
        if not replicate_back(lab, "web-01", results[-1]):
            console.print("[bold red]replication back to on-premises failed[/]")
            return 1
    except VmdrError as exc:
        console.print(f"[bold red]{exc}[/]")
        return exc.exit_code
    inventory = load_inventory(lab.directory)
    console.print(
        f"\n[bold]What this demo did:[/] started (or reused) the lab, read its "
        f"{len(inventory['vms'])} VMs through the vSphere API, and ran an initial "
        f"replication of web-01's {len(results)} disks to page blobs in Azurite "
        "(sparse-aware full copy, then a block-by-block verify: equal), then changed one "
        "cloud disk and replicated it back onto the original on-premises disk through the "
        "lab's process server and master target (differential resync, then a change set "
        "with a recovery point).\n"
        "The lab's configuration server discovered the same inventory (`.venv/bin/vmdr "
        "machines list`).\n"
        "[bold]Not yet built:[/] protected items and the failover, reprotect and failback "
        "workflows "
        "(see the open issues). The lab keeps running: "
        f"`.venv/bin/vmdr lab status --dir {args.dir}`, stop it with "
        f"`.venv/bin/vmdr lab down --dir {args.dir}`."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
