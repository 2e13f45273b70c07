"""``vmdr disk``: copy, resync and verify disks by URL or path.

    vmdr disk copy SRC DST       full sparse-aware copy (DST is created if missing)
    vmdr disk resync SRC DST     copy only the blocks that differ
    vmdr disk verify A B         prove A and B equal (exit 4 if they differ)

SRC/DST are backend URLs (``file:///…``, ``memory:…``) or plain paths. A
progress bar is drawn on stderr when it is a terminal; ``--json`` prints one
JSON object with the byte counters at the end instead of the summary.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from vmdr.blocks import (
    Counters,
    DiffResync,
    DisksDiffer,
    FullCopy,
    InvalidBlockSize,
    OperationCancelled,
    Verify,
    check_block_size,
    open_backend,
)
from vmdr.blocks.hashing import MAX_BLOCK_SIZE, MIN_BLOCK_SIZE
from vmdr.cli.output import console, emit_json, err_console, fail
from vmdr.model.errors import VmdrError

__all__ = ["app", "parse_block_size"]

app = typer.Typer(
    name="disk",
    help="Copy, resync and verify disks (files, VMDKs, memory:) by URL or path.",
    no_args_is_help=True,
)

BLOCK_SIZE_HELP = "Block size for hashing and zero detection: a power of two, e.g. 64K, 1M."
JSON_HELP = "Print one JSON object with the byte counters at the end."
PARALLEL_HELP = "Hash each disk in a worker process of its own (default: 64 MiB or more, 2+ CPUs)."

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMG]?)(?:i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_block_size(text: str) -> int:
    """``64K``, ``64KiB``, ``1M`` or ``65536`` to bytes; must be a power of two."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise InvalidBlockSize(block_size=text, low=MIN_BLOCK_SIZE, high=MAX_BLOCK_SIZE)
    return check_block_size(int(match[1]) * _UNITS[match[2].upper()])


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@contextmanager
def progress_bar(label: str, quiet: bool) -> Iterator[Callable[[Counters], None] | None]:
    """A progress callback drawing on stderr, or None when nobody is watching.

    The bar refreshes from the callback, not from Rich's refresh thread, so
    hashing workers can start with a plain fork."""
    if quiet or not err_console.is_terminal:
        yield None
        return
    columns = (
        TextColumn(label),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, auto_refresh=False, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(c: Counters) -> None:
            bar.update(task, completed=c.done, total=c.total or None)
            bar.refresh()

        yield update


def _report(name: str, src: str, dst: str, block_size: int, c: Counters, as_json: bool) -> None:
    if as_json:
        emit_json(
            {"operation": name, "source": src, "target": dst, "block_size": block_size}
            | c.to_dict()
        )
        return
    console.print(
        f"{name}: {human(c.done)} in {c.seconds:.2f} s — read {human(c.read)}, "
        f"written {human(c.written)}, zeroed {human(c.zeroed)}, "
        f"skipped {human(c.skipped_zero)} zero and {human(c.skipped_equal)} equal",
        highlight=False,
    )


def _run_copy(kind: str, src: str, dst: str, block_size: str, as_json: bool, **kw: Any) -> None:
    try:
        bs = parse_block_size(block_size)
        with (
            open_backend(src, "r") as source,
            open_backend(dst, "rw", create=kind == "copy") as target,
            progress_bar(kind, as_json) as progress,
        ):
            if kind == "copy":
                op: FullCopy | DiffResync = FullCopy(
                    source, target, block_size=bs, progress=progress
                )
            else:
                op = DiffResync(source, target, block_size=bs, progress=progress, **kw)
            try:
                counters = op.run()
            except KeyboardInterrupt:
                raise OperationCancelled(
                    operation=kind, done=op.counters.done, total=op.counters.total
                ) from None
        _report(kind, src, dst, bs, counters, as_json)
    except VmdrError as exc:
        fail(exc, as_json)


@app.command()
def copy(
    src: str = typer.Argument(..., help="Source disk URL or path."),
    dst: str = typer.Argument(..., help="Target disk URL or path (created if missing)."),
    block_size: str = typer.Option("64K", "--block-size", help=BLOCK_SIZE_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Copy every byte of SRC onto DST, skipping holes and zero blocks."""
    _run_copy("copy", src, dst, block_size, as_json)


@app.command()
def resync(
    src: str = typer.Argument(..., help="Source disk URL or path."),
    dst: str = typer.Argument(..., help="Target disk URL or path (must exist)."),
    block_size: str = typer.Option("64K", "--block-size", help=BLOCK_SIZE_HELP),
    parallel: bool | None = typer.Option(None, "--parallel/--no-parallel", help=PARALLEL_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Make DST equal to SRC by copying only the blocks that differ."""
    _run_copy("resync", src, dst, block_size, as_json, parallel=parallel)


@app.command()
def verify(
    a: str = typer.Argument(..., help="First disk URL or path."),
    b: str = typer.Argument(..., help="Second disk URL or path."),
    block_size: str = typer.Option("64K", "--block-size", help=BLOCK_SIZE_HELP),
    max_differences: int = typer.Option(10, "--max-differences", help="Ranges to list."),
    parallel: bool | None = typer.Option(None, "--parallel/--no-parallel", help=PARALLEL_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Prove A and B hold the same bytes; exit 4 and list ranges if not."""
    try:
        bs = parse_block_size(block_size)
        with (
            open_backend(a, "r") as da,
            open_backend(b, "r") as db,
            progress_bar("verify", as_json) as progress,
        ):
            op = Verify(
                da,
                db,
                block_size=bs,
                max_differences=max_differences,
                parallel=parallel,
                progress=progress,
            )
            try:
                result = op.run()
            except KeyboardInterrupt:
                raise OperationCancelled(
                    operation="verify", done=op.counters.done, total=op.counters.total
                ) from None
    except VmdrError as exc:
        fail(exc, as_json)
    if result.equal:
        if as_json:
            emit_json({"operation": "verify", "a": a, "b": b} | result.to_dict())
        else:
            console.print(
                f"equal: {human(result.size_a)}, root {result.root_a.hex()} "
                f"({result.counters.seconds:.2f} s)",
                highlight=False,
            )
        return
    ranges = ", ".join(f"{e.start}+{e.length}" for e in result.differences)
    more = " …" if result.differing_bytes > sum(e.length for e in result.differences) else ""
    sizes = "" if result.size_a == result.size_b else f"; sizes {result.size_a} and {result.size_b}"
    error = DisksDiffer(
        a=a, b=b, detail=f"{human(result.differing_bytes)} differ at {ranges}{more}{sizes}"
    )
    if as_json:
        emit_json(
            {"operation": "verify", "a": a, "b": b} | result.to_dict() | {"error": error.to_dict()}
        )
        raise typer.Exit(error.exit_code)
    fail(error)
