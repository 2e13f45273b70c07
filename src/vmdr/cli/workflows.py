"""Workflow commands of the CLI (thin clients of the configuration server).

``vmdr reprotect MACHINE --check`` runs every reprotect precheck of the source
documents against what the configuration server knows and shows each finding
with its code and fix, the recovery type it decided (OLR or ALR) and how each
cloud disk maps to an original disk. Exit status 0 when reprotect could
start, 1 otherwise (the first refusing rule's code is printed last).

The operations (``protect``, ``failover``, ``failback``, ``commit``,
``reprotect``) start a job on the configuration server and, by default, watch
it to its end with a live progress bar per step (``--no-wait`` returns at
once with the job's id; ``vmdr jobs watch JOB`` picks it up again). Exit
status 0 when the job succeeded, else 1 with the job's error code.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from vmdr.cli.jobs import JobFailed, WaitOption, follow
from vmdr.cli.output import console, emit_json, err_console, fail
from vmdr.cli.remote import JsonOption, call, show
from vmdr.model.errors import UsageError

__all__ = ["add_commands"]

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _print_report(report: dict[str, Any]) -> None:
    head = f"reprotect {report['vm']}: {report['mode']}"
    if not sys.stdout.isatty():
        sys.stdout.write(f"{head}\t{'ok' if report['ok'] else 'refused'}\n")
        for f in report["findings"]:
            sys.stdout.write(f"{f['code']}\t{f['severity']}\t{f['message']}\t{f['fix']}\n")
        return
    verdict = "[green]can start[/]" if report["ok"] else "[bold red]refused[/]"
    console.print(f"[bold]{head}[/] — {verdict}")
    if report["findings"]:
        table = Table(show_lines=True)
        for column in ("code", "finding", "fix"):
            table.add_column(column)
        for f in report["findings"]:
            style = _STYLE.get(f["severity"], "")
            table.add_row(f"[{style}]{f['code']}[/]", f["message"], f["fix"] or "-")
        console.print(table)
    if report.get("disks"):
        disks = Table(title="disks")
        for column in ("cloud disk", "original", "matched by", "confidence"):
            disks.add_column(column)
        for d in report["disks"]:
            disks.add_row(d["cloud"], d["original"] or "(new disk)", d["method"], d["confidence"])
        console.print(disks)


def _operate(item: str, operation: str, body: dict[str, Any], wait: bool, as_json: bool) -> None:
    started = call("POST", f"/v1/protected-items/{item}/{operation}", as_json, body)
    follow(started, wait, as_json)


def protect(
    machine: str = typer.Argument(..., help="Machine name (or id) as discovered."),
    wait: bool = WaitOption,
    as_json: bool = JsonOption,
) -> None:
    """Protect a VM to the cloud: initial replication to page blobs, verified."""
    follow(call("POST", "/v1/protected-items", as_json, {"machine": machine}), wait, as_json)


def failover(
    item: str = typer.Argument(..., help="Protected item id or its machine's name."),
    unplanned: bool = typer.Option(False, "--unplanned", help="The source site is down."),
    recovery_point: int | None = typer.Option(None, help="Recovery point (default: latest)."),
    wait: bool = WaitOption,
    as_json: bool = JsonOption,
) -> None:
    """Fail over in the item's current direction (to the cloud, or back)."""
    body = {"recovery_point": recovery_point} if recovery_point else {}
    op = "unplannedFailover" if unplanned else "plannedFailover"
    _operate(item, op, body, wait, as_json)


def failback(
    item: str = typer.Argument(..., help="Protected item id or its machine's name."),
    recovery_point: int | None = typer.Option(
        None, help="Fail back to this earlier cloud recovery point (default: the latest state)."
    ),
    wait: bool = WaitOption,
    as_json: bool = JsonOption,
) -> None:
    """Fail back to on-premises: a planned failover in the recovery → primary
    direction (after reprotect), proved byte for byte."""
    current = call("GET", f"/v1/protected-items/{item}", as_json)
    if current["direction"] != "recoveryToPrimary":
        fail(
            UsageError(
                detail=f"{current['vm']} is not replicating back to on-premises "
                f"(direction {current['direction']}); run `vmdr reprotect` first"
            ),
            as_json,
        )
    body = {"recovery_point": recovery_point} if recovery_point else {}
    _operate(item, "plannedFailover", body, wait, as_json)


def cancel_failover(
    item: str = typer.Argument(..., help="Protected item id or its machine's name."),
    wait: bool = WaitOption,
    as_json: bool = JsonOption,
) -> None:
    """Undo a planned failover: delete the cloud VM, power the source on."""
    _operate(item, "cancelFailover", {}, wait, as_json)


def test_failover(
    item: str = typer.Argument(..., help="Protected item id or its machine's name."),
    recovery_point: int | None = typer.Option(None, help="Recovery point (default: latest)."),
    wait: bool = WaitOption,
    as_json: bool = JsonOption,
) -> None:
    """Start a test VM in the cloud from copies of a recovery point, on an
    isolated network; production and replication are untouched."""
    _operate(
        item,
        "testFailover",
        {"recovery_point": recovery_point} if recovery_point else {},
        wait,
        as_json,
    )


def test_failover_cleanup(
    item: str = typer.Argument(..., help="Protected item id or its machine's name."),
    wait: bool = WaitOption,
    as_json: bool = JsonOption,
) -> None:
    """Delete the test VM and its disks."""
    _operate(item, "testFailoverCleanup", {}, wait, as_json)


def resync(
    item: str = typer.Argument(..., help="Protected item id or its machine's name."),
    wait: bool = WaitOption,
    as_json: bool = JsonOption,
) -> None:
    """Start replication over (differential: only what differs is sent)."""
    _operate(item, "resync", {}, wait, as_json)


def disable_protection(
    item: str = typer.Argument(..., help="Protected item id or its machine's name."),
    wait: bool = WaitOption,
    as_json: bool = JsonOption,
) -> None:
    """Stop protecting the machine (cloud disks and points are kept)."""
    _operate(item, "disableProtection", {}, wait, as_json)


def commit(
    item: str = typer.Argument(..., help="Protected item id or its machine's name."),
    force: bool = typer.Option(False, "--force", help="Commit a failback without its proof."),
    wait: bool = WaitOption,
    as_json: bool = JsonOption,
) -> None:
    """Commit the failover (after a failback: delete the cloud VM)."""
    _operate(item, "commit", {"force": True} if force else {}, wait, as_json)


def reprotect(
    machine: str = typer.Argument(..., help="Machine name (or protected item id)."),
    check: bool = typer.Option(False, "--check", help="Run the prechecks only; change nothing."),
    plan: bool = typer.Option(
        False, "--plan", help="Show what would cross the wire and how long it takes."
    ),
    alr: bool = typer.Option(False, "--alr", help="Alternate location recovery (a new VM)."),
    olr: bool = typer.Option(False, "--olr", help="Original location recovery only."),
    datastore: str | None = typer.Option(None, help="Datastore for the new VM (ALR)."),
    remove_snapshots: bool = typer.Option(
        False, "--remove-snapshots", help="Remove the VM's snapshots before the resync."
    ),
    master_target: str | None = typer.Option(None, help="Master target (default: the only one)."),
    process_server: str | None = typer.Option(
        None, help="Cloud process server name (default: the only one)."
    ),
    wait: bool = WaitOption,
    as_json: bool = JsonOption,
) -> None:
    """Reprotect a failed-over machine (cloud → on-premises, or back to the
    cloud after a failback); --check runs the prechecks alone."""
    if alr and olr:
        fail(UsageError(detail="--alr and --olr exclude each other"), as_json)
    mode = "alr" if alr else "olr" if olr else "auto"
    if plan:
        body = {"mode": mode, "datastore": datastore, "remove_snapshots": remove_snapshots}
        _show_plan(machine, {k: v for k, v in body.items() if v}, as_json)
        return
    if not check:
        body = {"mode": mode, "datastore": datastore, "remove_snapshots": remove_snapshots}
        _operate(machine, "reprotect", {k: v for k, v in body.items() if v}, wait, as_json)
        return
    body = {
        "machine": machine,
        "mode": mode,
        "datastore": datastore,
        "remove_snapshots": remove_snapshots,
        "master_target": master_target,
        "process_server": process_server,
    }
    report = call("POST", "/v1/prechecks/reprotect", as_json, body)
    if as_json:
        emit_json(report)
    else:
        _print_report(report)
    if not report["ok"]:
        if not as_json:
            first = next(f for f in report["findings"] if f["severity"] == "error")
            err_console.print(f"[bold red]{first['code']}[/]: reprotect refused", highlight=False)
        raise typer.Exit(1)


def _show_plan(item: str, body: dict[str, Any], as_json: bool) -> None:
    started = call("POST", f"/v1/protected-items/{item}/reprotect-plan", as_json, body)
    while not (job := call("GET", started["url"], as_json))["finished"]:
        time.sleep(0.2)
    if job["state"] != "succeeded":
        error = job.get("error") or {}
        failure = JobFailed(
            job=job["id"],
            kind=job["kind"],
            state=job["state"],
            detail=error.get("message", ""),
            fix=error.get("fix", ""),
        )
        fail(failure, as_json)
    plan = call("GET", f"/v1/protected-items/{item}", as_json)["reprotect_plan"]
    if as_json:
        emit_json(plan)
        return
    mib = 1 << 20
    table = Table(title=f"transfer plan of the next reprotect of {item}: {plan['mode']}")
    for column in ("disk", "target", "size MiB", "to send MiB"):
        table.add_column(column)
    for d in plan["disks"]:
        table.add_row(
            str(d["unit"]), d["target"], f"{d['capacity'] / mib:.0f}", f"{d['bytes'] / mib:.1f}"
        )
    console.print(table)
    when = (
        f"about {plan['seconds']} s at the process server's limit of "
        f"{plan['bandwidth'] / 1e6:.0f} MB/s"
        if plan["seconds"] is not None
        else "no bandwidth limit is set"
    )
    console.print(
        f"{plan['bytes'] / mib:.1f} MiB of {plan['capacity'] / mib:.0f} MiB will "
        f"cross; {when}; {plan['seconds_at_1gbit']} s at 1 Gbit/s."
    )
    for f in plan["findings"]:
        console.print(f"[{_STYLE.get(f['severity'], '')}]{f['code']}[/]: {escape(f['message'])}")


def add_commands(app: typer.Typer) -> None:
    commands = (
        protect,
        failover,
        failback,
        cancel_failover,
        commit,
        reprotect,
        test_failover,
        test_failover_cleanup,
        resync,
        disable_protection,
    )
    for command in commands:
        app.command(command.__name__.replace("_", "-"))(command)
    items = typer.Typer(help="Protected items.")

    @items.command("list")
    def list_items(as_json: bool = JsonOption) -> None:
        """List protected items."""
        from urllib.parse import quote

        rows: list[dict[str, Any]] = []
        while True:  # a page of 1000 at a time, by VM name
            after = f"&after={quote(rows[-1]['vm'])}" if rows else ""
            page = call("GET", f"/v1/protected-items?limit=1000{after}", as_json)
            rows += page
            if len(page) < 1000:
                break
        show(rows, ["vm", "state", "active_site", "direction", "running", "id"], "items", as_json)

    @items.command("show")
    def show_item(item: str, as_json: bool = JsonOption) -> None:
        """One protected item, with its disks, proofs and allowed operations."""
        emit_json(call("GET", f"/v1/protected-items/{item}", as_json))

    @items.command("point")
    def take_point(
        item: str,
        tag: str = typer.Option(..., help="A name for the point, e.g. before-upgrade."),
        wait: bool = WaitOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Take a recovery point now (while the VM runs in the cloud: a point a
        later failback can choose)."""
        started = call("POST", f"/v1/protected-items/{item}/recovery-points", as_json, {"tag": tag})
        follow(started, wait, as_json)

    @items.command("points")
    def item_points(item: str, as_json: bool = JsonOption) -> None:
        """The item's recovery points (each disk's state, e.g. a blob snapshot)."""
        rows = call("GET", f"/v1/protected-items/{item}/recovery-points", as_json)
        show(rows, ["seq", "tag", "kind", "time", "disks"], "recovery points", as_json)

    @items.command("metrics")
    def item_metrics(
        item: str,
        since: float = typer.Option(0.0, help="Only samples after this time (epoch seconds)."),
        as_json: bool = JsonOption,
    ) -> None:
        """RPO and throughput samples, one per replication cycle or heartbeat."""
        answer = call("GET", f"/v1/protected-items/{item}/metrics?since={since}", as_json)
        if as_json:
            emit_json(answer)
            return
        show(answer["samples"], ["time", "direction", "rpo_seconds", "bytes", "seconds",
                                 "bytes_per_second"], "replication samples", False)  # fmt: skip

    app.add_typer(items, name="items")
