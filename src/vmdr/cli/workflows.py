"""Workflow commands of the CLI (thin clients of the configuration server).

``vmdr reprotect MACHINE --check`` runs every reprotect precheck of the source
documents against what the configuration server knows and shows each finding
with its code and fix, the recovery type it decided (OLR or ALR) and how each
cloud disk maps to an original disk. Exit status 0 when reprotect could
start, 1 otherwise (the first refusing rule's code is printed last).

Reprotect itself (and failover, commit, failback) come with the workflows
(issue 8); until then ``--check`` is required and the command says so.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.table import Table

from vmdr.cli.output import console, emit_json, err_console, fail
from vmdr.cli.remote import JsonOption, call
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


def reprotect(
    machine: str = typer.Argument(..., help="Machine name (or id) as discovered."),
    check: bool = typer.Option(False, "--check", help="Run the prechecks only; change nothing."),
    alr: bool = typer.Option(False, "--alr", help="Alternate location recovery (a new VM)."),
    olr: bool = typer.Option(False, "--olr", help="Original location recovery only."),
    datastore: str | None = typer.Option(None, help="Datastore for the new VM (ALR)."),
    remove_snapshots: bool = typer.Option(
        False, "--remove-snapshots", help="Remove the VM's snapshots before the resync."
    ),
    master_target: str | None = typer.Option(
        None, help="Master target name (default: the only one)."
    ),
    process_server: str | None = typer.Option(
        None, help="Cloud process server name (default: the only one)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Reprotect a failed-over machine from the cloud back to on-premises."""
    if alr and olr:
        fail(UsageError(detail="--alr and --olr exclude each other"), as_json)
    if not check:
        fail(
            UsageError(
                detail="only `vmdr reprotect MACHINE --check` is available in this version; "
                "the reprotect workflow itself is not built yet"
            ),
            as_json,
        )
    body = {
        "machine": machine,
        "mode": "alr" if alr else "olr" if olr else "auto",
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


def add_commands(app: typer.Typer) -> None:
    app.command("reprotect")(reprotect)
