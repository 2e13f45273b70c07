"""The ``vmdr`` command: one Typer app, one module per command group."""

from __future__ import annotations

import logging
import os

import typer

from vmdr import __version__
from vmdr.cli import disk, groups, jobs, lab, people, plans, remote, serve, traffic, workflows

app = typer.Typer(
    name="vmdr",
    help="Disaster recovery for VMware VMs between vSphere and Azure, with delta failback.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(lab.app, name="lab")
app.add_typer(disk.app, name="disk")
app.add_typer(serve.app, name="serve")
remote.add_commands(app)
jobs.add_commands(app)
workflows.add_commands(app)
traffic.add_commands(app)
plans.add_commands(app)
groups.add_commands(app)
people.add_commands(app)


@app.command()
def version() -> None:
    """Print vmdr's version."""
    typer.echo(__version__)


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("VMDR_LOG_LEVEL", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    app()
