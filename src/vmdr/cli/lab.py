"""``vmdr lab``: start, inspect and stop the embedded two-site lab."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from vmdr.cli.output import console, emit_json, fail
from vmdr.lab.lab import DEFAULT_DIR, Lab
from vmdr.lab.state import load_inventory
from vmdr.model.errors import LabNotRunning, VmdrError

app = typer.Typer(help="The embedded lab: vCenter simulator, Azurite and BIND on 127.0.0.1.")

DirOption = typer.Option(
    DEFAULT_DIR, "--dir", envvar="VMDR_LAB_DIR", help="Lab folder (state, logs, credentials)."
)
JsonOption = typer.Option(False, "--json", help="Print one JSON document.")


@app.command()
def up(
    directory: Path = DirOption,
    vcenter_port: int = typer.Option(0, help="vCenter simulator port (0: a free one)."),
    azurite_port: int = typer.Option(0, help="Azurite blob port (0: a free one)."),
    dns_port: int = typer.Option(0, help="BIND port (0: a free one)."),
    as_json: bool = JsonOption,
) -> None:
    """Start the on-premises site, the cloud site and DNS, and fill the inventory."""
    ports = {
        name: port
        for name, port in (("vcenter", vcenter_port), ("azurite", azurite_port), ("dns", dns_port))
        if port
    }
    lab = Lab(directory)
    started = time.monotonic()
    try:
        with console.status("starting the lab…", spinner="dots") if not as_json else _null():
            lab.up(ports)
    except VmdrError as exc:
        fail(exc, as_json)
    statuses = lab.status()
    if as_json:
        emit_json({"directory": str(lab.directory), "services": [s.to_dict() for s in statuses]})
        return
    _print_status(lab, statuses)
    inventory = load_inventory(lab.directory)
    console.print(
        f"lab up in {time.monotonic() - started:.1f} s: "
        f"{len(inventory['vms'])} VMs and {len(inventory['physical_servers'])} physical "
        f"server(s) created; credentials in {lab.directory / 'credentials.json'} (mode 0600)."
    )


@app.command()
def status(directory: Path = DirOption, as_json: bool = JsonOption) -> None:
    """Show each lab service as up, down or unreachable (exit 1 unless all are up)."""
    lab = Lab(directory)
    try:
        statuses = lab.status()
    except VmdrError as exc:
        fail(exc, as_json)
    compute = _cloud_compute(lab)
    if as_json:
        emit_json({"directory": str(lab.directory), "services": [s.to_dict() for s in statuses],
                   "cloud_compute": compute})  # fmt: skip
    else:
        _print_status(lab, statuses)
        if compute:
            console.print(f"cloud compute: {compute['driver']} ({compute['where']})")
    if any(s.state != "up" for s in statuses):
        raise typer.Exit(1)


@app.command()
def down(
    directory: Path = DirOption,
    purge: bool = typer.Option(False, help="Also delete the lab folder."),
    as_json: bool = JsonOption,
) -> None:
    """Stop every process the lab started (by pid)."""
    lab = Lab(directory)
    try:
        stopped = lab.down(purge=purge)
    except VmdrError as exc:
        fail(exc, as_json)
    if as_json:
        emit_json({"directory": str(lab.directory), "stopped": stopped, "purged": purge})
    else:
        console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def dashboard(directory: Path = DirOption, as_json: bool = JsonOption) -> None:
    """Where the lab's dashboard is: its address, the CA to trust and the
    file holding the admin token (the token itself is not printed)."""
    lab = Lab(directory)
    state = lab.state()
    try:
        cs = state.service("configuration-server") if state else None
    except KeyError:
        cs = None
    if cs is None:
        fail(LabNotRunning(directory=str(lab.directory)), as_json)
    out = {
        "url": f"{cs.url}/ui/",
        "ca": cs.details["ca"],
        "token_file": str(Path(cs.details["state"]) / "admin.token"),
    }
    if as_json:
        emit_json(out)
        return
    console.print(f"dashboard: {out['url']}")
    console.print(f"trust this CA in the browser: {out['ca']}")
    console.print(f"log in with the token in: {out['token_file']}")


def _cloud_compute(lab: Lab) -> dict[str, str] | None:
    """Which cloud compute the lab's configuration server runs with (its
    data-plane setting), if it has one yet."""
    from vmdr.control.dataplane import DataPlane

    state = lab.state()
    try:
        cs = state.service("configuration-server") if state else None
        plane = DataPlane.load(Path(cs.details["state"])) if cs else None
    except (VmdrError, KeyError):
        return None
    return plane.describe()["cloud_compute"] if plane else None


def _print_status(lab: Lab, statuses: list) -> None:  # type: ignore[type-arg]
    table = Table(title=f"lab {lab.directory}")
    for col in ("service", "state", "address", "pid", "log"):
        table.add_column(col)
    colours = {"up": "green", "down": "red", "unreachable": "yellow"}
    for s in statuses:
        table.add_row(s.name, f"[{colours[s.state]}]{s.state}[/]", s.url, str(s.pid), s.log)
    console.print(table)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
