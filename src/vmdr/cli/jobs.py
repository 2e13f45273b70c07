"""Jobs in the CLI: ``vmdr jobs list|show|watch|cancel|retry``, and how every
command that starts a job follows it (``follow``: a live bar per step in a
terminal, lines in a pipe, the final job with ``--json``; exit 1 with the
job's own error code when it did not succeed). Events are read with the
server's cursor (``GET /v1/jobs/{id}/events?after=N``)."""

from __future__ import annotations

import sys
import time
from typing import Any

import typer

from vmdr.cli.output import console, emit_json, fail
from vmdr.cli.remote import JsonOption, call, lister, show
from vmdr.model.errors import VmdrError

__all__ = ["JobFailed", "WaitOption", "add_commands", "follow", "watch"]

WaitOption = typer.Option(True, "--wait/--no-wait", help="Watch the job to its end.")


class JobFailed(VmdrError):
    code = "VMDR-E0515"
    msg = "job {job} ({kind}) {state}: {detail}"
    fix = "{fix}"


def watch(job_id: str, as_json: bool) -> None:
    """Follow a job until it ends: a bar per step in a terminal, the final
    job as JSON with --json; exit 1 with its error code when it failed."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    live = sys.stdout.isatty() and not as_json
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not live,
    )
    tasks: dict[str, Any] = {}
    cursor = 0
    with progress:
        while True:  # the events after the cursor, then the job's state
            page = call("GET", f"/v1/jobs/{job_id}/events?after={cursor}", as_json)
            for event in page["events"]:
                step = event["step"]
                if step not in tasks:
                    tasks[step] = progress.add_task(step, total=1, info="")
                if event["kind"] == "end":
                    progress.update(tasks[step], completed=1)
                elif event["message"]:
                    progress.update(tasks[step], info=event["message"][:70])
                if not live and event["kind"] in ("end", "error", "cancelled") and not as_json:
                    sys.stdout.write(f"{step}\t{event['kind']}\t{event['message'] or ''}\n")
            cursor = page["next"]
            if page["finished"] and not page["events"]:
                break
            if not page["events"]:
                time.sleep(0.5)
    job = call("GET", f"/v1/jobs/{job_id}", as_json)
    if as_json:
        emit_json(job)
    elif live:
        console.print(f"job {job['id']} ({job['kind']}): [bold]{job['state']}[/]")
    if job["state"] != "succeeded":
        error = job.get("error") or {}
        failure = JobFailed(
            job=job_id,
            kind=job["kind"],
            state=job["state"],
            detail=error.get("message", job["state"]),
            fix=error.get("fix", ""),
        )
        if error.get("code"):
            failure.code = error["code"]  # type: ignore[misc]
        if as_json:
            raise typer.Exit(1)
        fail(failure)


def follow(started: dict[str, Any], wait: bool, as_json: bool, what: str | None = None) -> None:
    """A job just started: watch it to its end, or (``--no-wait``) say how to."""
    what = what or f"{started['kind']} of item {started.get('item')}"
    if not wait:
        if as_json:
            emit_json(started)
        else:
            console.print(
                f"{what} started: job {started['job']} (`vmdr jobs watch {started['job']}`)"
            )
        return
    if not as_json:
        console.print(f"{what}: job {started['job']}")
    watch(started["job"], as_json)


def add_commands(app: typer.Typer) -> None:
    jobs = typer.Typer(help="Jobs of the configuration server.")
    jobs.command("list")(lister("/v1/jobs", ["id", "kind", "state", "step", "item"], "jobs"))

    @jobs.command("watch")
    def watch_job(job: str, as_json: bool = JsonOption) -> None:
        """Follow a job to its end, with a live bar per step."""
        watch(job, as_json)

    @jobs.command("cancel")
    def cancel_job(job: str, as_json: bool = JsonOption) -> None:
        """Ask a job to stop: at its next step, or at once inside a data copy."""
        answer = call("POST", f"/v1/jobs/{job}/cancel", as_json)
        if as_json:
            emit_json(answer)
        elif answer["cancel_requested"]:
            console.print(f"cancel requested for job {job} (`vmdr jobs watch {job}`)")
        else:
            console.print(f"job {job} had already ended")

    @jobs.command("retry")
    def retry_job(
        job: str,
        wait: bool = WaitOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Run a failed or cancelled job again (a plan resumes where it stopped)."""
        started = call("POST", f"/v1/jobs/{job}/retry", as_json)
        follow(started, wait, as_json, what=f"retry of job {job} ({started['kind']})")

    @jobs.command("show")
    def show_job(job: str, as_json: bool = JsonOption) -> None:
        """One job with its events."""
        data = call("GET", f"/v1/jobs/{job}", as_json)
        if as_json:
            emit_json(data)
            return
        console.print(f"job {data['id']} ({data['kind']}): {data['state']}")
        show(data["events"], ["time", "step", "kind", "bytes", "message"], "events", False)

    app.add_typer(jobs, name="jobs")
