"""`vmdr groups …`: replication groups, whose members' recovery points are
cut together and failed over together (docs/plans.md).

    vmdr groups create shop --item db-01 --item app-01 [--quiesce freeze.sh --thaw thaw.sh]
    vmdr groups point shop                     # cut a group point now, watched
    vmdr groups failover shop [--point N]      # unplanned, every member at one point
    vmdr groups test-failover shop [--point N]
"""

from __future__ import annotations

import time
from typing import Any

import typer

from vmdr.cli.jobs import WaitOption, follow
from vmdr.cli.output import console, emit_json, fail
from vmdr.cli.remote import JsonOption, call, show
from vmdr.model.errors import VmdrError

__all__ = ["add_commands"]


class GroupJobsFailed(VmdrError):
    code = "VMDR-E0918"
    exit_code = 1
    msg = "replication group {group}: {failed}"
    fix = "See each job (`vmdr jobs show JOB`); the members that succeeded stay failed over."


def _follow_all(group: str, started: dict[str, Any], as_json: bool) -> None:
    """Wait for every member's job; one summary at the end."""
    jobs = {j["job"]: j for j in started["jobs"]}
    while True:
        states = {job: call("GET", f"/v1/jobs/{job}", as_json) for job in jobs}
        if all(s["finished"] for s in states.values()):
            break
        time.sleep(0.5)
    rows = [
        {**jobs[job], "state": s["state"], "error": (s["error"] or {}).get("code")}
        for job, s in states.items()
    ]
    failed = [f"{r['item']}: {r['error']}" for r in rows if r["state"] != "succeeded"]
    if failed:
        fail(GroupJobsFailed(group=group, failed="; ".join(failed)), as_json)
    if as_json:
        emit_json({**started, "jobs": rows})
        return
    console.print(f"group {group}: every member at group point {started['group_point']}")
    show(rows, ["item", "kind", "recovery_point", "state", "job"], "members", False)


def add_commands(app: typer.Typer) -> None:
    groups = typer.Typer(help="Replication groups: members' points cut and failed over together.")

    @groups.command("create")
    def create(
        name: str,
        item: list[str] = typer.Option(..., "--item", help="A member (VM name or item id)."),
        quiesce: str | None = typer.Option(None, help="Script in scripts/ run before a cut."),
        thaw: str | None = typer.Option(None, help="Script in scripts/ run after a cut."),
        timeout: float = typer.Option(60.0, help="Seconds each of those scripts may take."),
        as_json: bool = JsonOption,
    ) -> None:
        """Create a group of protected items."""
        body: dict[str, Any] = {"name": name, "items": item}
        if quiesce or thaw:
            body["quiesce"] = {"script": quiesce, "thaw": thaw, "timeout": timeout}
        group = call("POST", "/v1/replication-groups", as_json, body)
        emit_json(group) if as_json else console.print(f"group {name}: {', '.join(group['vms'])}")

    @groups.command("list")
    def list_groups(as_json: bool = JsonOption) -> None:
        """List replication groups."""
        rows = [{**g, "vms": ", ".join(g["vms"]), "points": len(g["points"])}
                for g in call("GET", "/v1/replication-groups", as_json)]  # fmt: skip
        show(rows, ["name", "vms", "points", "id"], "replication groups", as_json)

    @groups.command("show")
    def show_group(group: str, as_json: bool = JsonOption) -> None:
        """A group with its complete group points."""
        emit_json(call("GET", f"/v1/replication-groups/{group}", as_json))

    @groups.command("delete")
    def delete(group: str, as_json: bool = JsonOption) -> None:
        """Delete a group (its members go back to their own points)."""
        result = call("DELETE", f"/v1/replication-groups/{group}", as_json)
        emit_json(result) if as_json else console.print(f"deleted group {group}")

    @groups.command("point")
    def point(group: str, wait: bool = WaitOption, as_json: bool = JsonOption) -> None:
        """Cut a group point now."""
        started = call("POST", f"/v1/replication-groups/{group}/points", as_json, {})
        follow(started, wait, as_json, f"group {group}: point")

    def failover(operation: str, doc: str) -> Any:
        def command(
            group: str,
            point: int | None = typer.Option(
                None, "--point", help="A group point (default: newest)."
            ),
            wait: bool = WaitOption,
            as_json: bool = JsonOption,
        ) -> None:
            body = {"group_point": point} if point else {}
            started = call("POST", f"/v1/replication-groups/{group}/{operation}", as_json, body)
            if wait:
                _follow_all(group, started, as_json)
            else:
                emit_json(started) if as_json else console.print(started)

        command.__doc__ = doc
        return command

    groups.command("failover")(failover("unplannedFailover", "Every member to one group point."))
    groups.command("test-failover")(
        failover("testFailover", "Test failover of every member at one group point.")
    )
    app.add_typer(groups, name="groups")
