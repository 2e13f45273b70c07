"""How every vmdr command reports: Rich for people, one JSON document for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console

from vmdr.model.errors import VmdrError

console = Console()
# Errors are never hard-wrapped: a message or a command in its fix must stay
# on one line for grep and for copy and paste, in a pipe as in a terminal.
err_console = Console(stderr=True, soft_wrap=True)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def fail(error: VmdrError, as_json: bool = False) -> NoReturn:
    """Print an error with its code and fix, and exit with its exit code."""
    if as_json:
        emit_json({"error": error.to_dict()})
    else:
        code = error.to_dict()["code"]
        err_console.print(f"[bold red]{code}[/]: {error.message}", highlight=False)
        if error.remedy:
            err_console.print(f"  [bold]fix:[/] {error.remedy}", highlight=False)
    raise typer.Exit(error.exit_code)
