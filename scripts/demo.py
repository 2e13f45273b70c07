"""`make demo`: the whole cycle of the source documents in the embedded lab.

Three VMs are protected to the cloud, take writes on-premises, fail over (the
cloud VMs then run a workload that changes their disks), are committed, and
reprotected back: web-01 to its original location (differential), db-01 to
an alternate location after its original was deleted (full copy, a new VM on
the master target's host), app-01 refused by a precheck (it has a snapshot).
The two are failed back with a byte-for-byte proof, committed, and protected
to the cloud again (only the delta travels). After each sync it prints what
was read from the disks: the final sync before failover reads only the
areas changed block tracking names; the first sync and the one after
failback compare whole disks. Every operation is a durable job
of the configuration server, run through the `vmdr` CLI with its progress
bars; the summary table says what crossed the wire and whether the disks
were proved equal.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vmdr.lab import guest
from vmdr.lab.lab import Lab, vcenter_endpoint
from vmdr.lab.state import load_inventory
from vmdr.model.errors import VmdrError

console = Console(width=None if sys.stdout.isatty() else 160)
MiB = 1 << 20


def fresh_lab(lab: Lab) -> None:
    """A new lab each run, so `make demo` is repeatable: a lab folder left by
    an earlier run (its services, inventory and configuration database) is
    removed first; a folder that is not a lab's is left alone."""
    if lab.state() is not None:
        lab.down(purge=True)
    elif (lab.directory / "credentials.json").exists():
        shutil.rmtree(lab.directory)
    elif lab.directory.exists() and any(lab.directory.iterdir()):
        raise SystemExit(f"{lab.directory} is not empty and holds no lab; choose another --dir")
    started = time.monotonic()
    lab.up()
    console.print(
        f"[bold]1.[/] started the lab in {lab.directory} in {time.monotonic() - started:.1f} s: "
        "vCenter and a standalone ESX host (simulators, TLS), Azurite (HTTPS), BIND (TSIG), "
        "the configuration server, a master target (on-premises) and a process server (cloud)"
    )


def show_discovery(lab: Lab) -> None:
    machines = vmdr_json(lab, "machines", "list")
    table = Table(title="on-premises inventory, as the configuration server discovered it")
    for col in ("VM", "guest", "power", "disk.enableUUID", "snapshots", "disks"):
        table.add_column(col)
    for m in machines:
        table.add_row(
            m["name"],
            m["guest_full_name"] or m["guest_os"] or "-",
            m["power_state"] or "-",
            str(m["enable_uuid"]),
            str(m["snapshots"]),
            str(len(m["disks"])),
        )
    console.print("[bold]2.[/] discovered the on-premises site:")
    console.print(table)


def _env(lab: Lab) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMDR_")}
    env["VMDR_LAB_DIR"] = str(lab.directory)
    return env


def vmdr(lab: Lab, *args: str) -> int:
    """Run a vmdr command, its progress bars on this terminal."""
    console.print(f"[dim]$ vmdr {' '.join(args)}[/]")
    return subprocess.run([sys.executable, "-m", "vmdr", *args], env=_env(lab)).returncode


def vmdr_json(lab: Lab, *args: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "vmdr", *args, "--json"],
        env=_env(lab),
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout) if result.stdout.strip() else None


def must(lab: Lab, *args: str) -> None:
    if vmdr(lab, *args) != 0:
        raise SystemExit(f"`vmdr {' '.join(args)}` failed; see above")


def onprem_flat(lab: Lab, vm: str) -> Path:
    """The flat extent of the VM's first disk on its datastore folder (after
    ALR: the new VM's)."""
    item = vmdr_json(lab, "items", "show", vm)
    datastore, _, rel = item["disks"][0]["file"].partition("] ")
    roots = {d["name"]: d["path"] for d in load_inventory(lab.directory)["topology"]["datastores"]}
    return Path(roots[datastore.lstrip("[")]) / rel.replace(".vmdk", "-flat.vmdk")


def write_on_premises(lab: Lab, vms: list[str], what: str, offset: int) -> None:
    """The applications write on-premises."""
    for name in vms:
        guest.write(onprem_flat(lab, name), offset, f"{name}: {what}\n".encode() * 2000)


def delete_original(lab: Lab, name: str) -> None:
    from vmdr.providers.vsphere.control import delete_vm, find_vm
    from vmdr.providers.vsphere.session import session

    with session(vcenter_endpoint(lab.directory)) as si:
        delete_vm(si, find_vm(si, name))


def show_master_target_disks(lab: Lab, when: str) -> None:
    """What vCenter shows attached to the master target's VM (mt-01) beyond
    its own disks: the disks it writes during a failback."""
    from vmdr.lab.roles import LAB_MASTER_TARGET_VM
    from vmdr.providers.vsphere.control import attached_disks, find_vm
    from vmdr.providers.vsphere.session import session

    with session(vcenter_endpoint(lab.directory)) as si:
        disks = attached_disks(si, find_vm(si, LAB_MASTER_TARGET_VM))
    others = sorted(f for f in disks if f"] {LAB_MASTER_TARGET_VM}/" not in f)
    console.print(f"   disks attached to {LAB_MASTER_TARGET_VM} {when}: {len(others) or 'none'}")
    for file in others:
        console.print(f"     {escape(file)}  (VMDK UUID {disks[file]})")


def show_reads(lab: Lab, vms: list[str]) -> None:
    """What each VM's last sync read from its disks, against their size, and
    how: the areas changed block tracking named, or the whole disks compared."""
    for vm in vms:
        item = vmdr_json(lab, "items", "show", vm)
        last = item["last_sync"] or {}
        size = sum(d["capacity"] for d in item["disks"])
        read = sum(int(v) for v in (last.get("read") or {}).values())
        how = sorted(set((last.get("how") or {}).values())) or ["-"]
        console.print(
            f"   {vm} {last.get('step', '-')}: read {read / MiB:.2f} MiB of {size / MiB:.0f} MiB "
            f"({', '.join(how)})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".vmdr-lab"))
    args = parser.parse_args()
    lab = Lab(args.dir)
    vms = ["web-01", "db-01", "app-01"]
    timing: dict[str, float] = {}
    try:
        fresh_lab(lab)
        show_discovery(lab)
        console.print("[bold]3.[/] protect three VMs to the cloud (page blobs in Azurite):")
        for vm in vms:
            must(lab, "protect", vm)
        show_reads(lab, vms)
        console.print(
            "[bold]4.[/] the applications write on-premises; planned failover "
            "(shut down, final sync, recovery point, start in the cloud):"
        )
        write_on_premises(lab, vms, "orders written before the failover", 2 * MiB)
        for vm in vms:
            must(lab, "failover", vm)
        show_reads(lab, vms)
        console.print("[bold]5.[/] the VMs run in the cloud and change their disks; commit:")
        time.sleep(3)
        for vm in vms:
            must(lab, "commit", vm)
        console.print(
            "[bold]6.[/] db-01's original is deleted on-premises (ALR); reprotect "
            "checks every rule first:"
        )
        delete_original(lab, "db-01")
        refusal = ""
        for vm, extra in (("web-01", []), ("db-01", ["--datastore", "vmfs-01"]), ("app-01", [])):
            started = time.monotonic()
            if vmdr(lab, "reprotect", vm, *extra) != 0:
                job = vmdr_json(lab, "items", "show", vm)
                refusal = job["last_error"] or "refused"
                console.print(f"   [yellow]{vm} was refused, as it should be:[/] {escape(refusal)}")
                continue
            timing[vm] = time.monotonic() - started
        show_master_target_disks(lab, "while they replicate home")
        console.print(
            "[bold]7.[/] fail back (stop the cloud VM, final sync, prove every disk "
            "equal, power on on-premises), commit, protect to the cloud again:"
        )
        for vm in ("web-01", "db-01"):
            started = time.monotonic()
            must(lab, "failback", vm)
            timing[vm] += time.monotonic() - started
            must(lab, "commit", vm)
        show_master_target_disks(lab, "after failback")
        console.print(
            "[bold]8.[/] back home, the applications write on-premises again; "
            "reprotect to the cloud sends only that delta:"
        )
        write_on_premises(lab, ["web-01", "db-01"], "orders written after failback", 9 * MiB)
        for vm in ("web-01", "db-01"):
            must(lab, "reprotect", vm)
        show_reads(lab, ["web-01", "db-01"])
        summary(lab, vms, timing, refusal)
    except VmdrError as exc:
        console.print(f"[bold red]{exc}[/]")
        return exc.exit_code
    console.print(
        "\nThe lab keeps running: `.venv/bin/vmdr items list`, `.venv/bin/vmdr jobs list`, "
        f"`.venv/bin/vmdr lab status --dir {args.dir}`; stop it with "
        f"`.venv/bin/vmdr lab down --dir {args.dir}`."
    )
    return 0


def summary(lab: Lab, vms: list[str], timing: dict[str, float], refusal: str) -> None:
    table = Table(title="failback summary")
    for col in (
        "VM",
        "path",
        "disk size MiB",
        "sent to on-prem MiB",
        "sent back to cloud MiB",
        "reprotect + failback s",
        "verified",
        "state",
    ):
        table.add_column(col)
    for vm in vms:
        item = vmdr_json(lab, "items", "show", vm)
        size = sum(d["capacity"] for d in item["disks"])
        if vm not in timing:
            table.add_row(
                vm,
                "refused",
                f"{size / MiB:.0f}",
                "-",
                "-",
                "-",
                escape(refusal.split(":")[0]),
                item["state"],
            )
            continue
        sent = sum(int(v) for v in (item["reprotect_sent"] or {}).values())
        back = sum(int(v) for v in ((item["last_sync"] or {}).get("bytes") or {}).values())
        proof = item["failback_proof"] or {}
        verified = "equal" if proof and all(p["equal"] for p in proof.values()) else "NO"
        table.add_row(
            vm,
            item["recovery_type"] or "-",
            f"{size / MiB:.0f}",
            f"{sent / MiB:.1f}",
            f"{back / MiB:.2f}",
            f"{timing[vm]:.1f}",
            verified,
            item["state"],
        )
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
