"""`vmdr plans …`: recovery plans (ordered groups of protected items with
scripts, manual approvals, DNS cutovers and probes between them).

    vmdr plans create three-tier --file plan.toml      # or .json; see docs/plans.md
    vmdr plans failover three-tier                     # group by group, watched
    vmdr plans approve three-tier                      # a manual step waits for this
    vmdr plans resume three-tier                       # after a failed step: skips what is done
    vmdr plans failback | commit | reprotect [--remove-snapshots] | test-failover NAME
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import typer

from vmdr.cli.jobs import WaitOption, follow
from vmdr.cli.output import console, emit_json, fail
from vmdr.cli.remote import JsonOption, call, show
from vmdr.model.errors import UsageError

__all__ = ["add_commands"]


def _load(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text()
        data: dict[str, Any] = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise UsageError(detail=f"cannot read the plan {file}: {exc}") from exc
    return data


def _run(plan: str, operation: str, body: dict[str, Any], wait: bool, as_json: bool) -> None:
    started = call("POST", f"/v1/recovery-plans/{plan}/{operation}", as_json, body)
    follow(started, wait, as_json, f"plan {plan}: {operation}")


def add_commands(app: typer.Typer) -> None:
    plans = typer.Typer(help="Recovery plans: ordered groups of protected items.")

    @plans.command("create")
    def create(
        name: str,
        file: Path = typer.Option(..., help="The plan's groups and steps (.toml or .json)."),
        as_json: bool = JsonOption,
    ) -> None:
        """Create a recovery plan from a file."""
        try:
            spec = _load(file)
        except UsageError as exc:
            fail(exc, as_json)
        plan = call("POST", "/v1/recovery-plans", as_json, {"name": name, "spec": spec})
        emit_json(plan) if as_json else console.print(f"plan {plan['name']} created")

    @plans.command("list")
    def list_plans(as_json: bool = JsonOption) -> None:
        """List recovery plans."""
        rows = [{"name": p["name"], "groups": len(p["spec"]["groups"]), "id": p["id"]}
                for p in call("GET", "/v1/recovery-plans", as_json)]  # fmt: skip
        show(rows, ["name", "groups", "id"], "recovery plans", as_json)

    @plans.command("show")
    def show_plan(plan: str, as_json: bool = JsonOption) -> None:
        """A plan with its groups and its last runs."""
        emit_json(call("GET", f"/v1/recovery-plans/{plan}", as_json))

    @plans.command("delete")
    def delete(plan: str, as_json: bool = JsonOption) -> None:
        """Delete a plan (its items stay protected)."""
        result = call("DELETE", f"/v1/recovery-plans/{plan}", as_json)
        emit_json(result) if as_json else console.print(f"deleted plan {plan}")

    @plans.command("approve")
    def approve(plan: str, as_json: bool = JsonOption) -> None:
        """Approve the manual step the running plan waits on."""
        result = call("POST", f"/v1/recovery-plans/{plan}/approve", as_json, {})
        emit_json(result) if as_json else console.print(f"approved {result['approved']}")

    @plans.command("resume")
    def resume(plan: str, wait: bool = WaitOption, as_json: bool = JsonOption) -> None:
        """Run a failed plan again from where it stopped."""
        started = call("POST", f"/v1/recovery-plans/{plan}/resume", as_json, {})
        follow(started, wait, as_json, f"plan {plan}: resume")

    def operation(op: str, doc: str) -> Any:
        def command(
            plan: str,
            remove_snapshots: bool = typer.Option(
                False, "--remove-snapshots", help="(reprotect) remove VM snapshots first."
            ),
            force: bool = typer.Option(False, "--force", help="(commit) without a proof."),
            wait: bool = WaitOption,
            as_json: bool = JsonOption,
        ) -> None:
            body = {"remove_snapshots": remove_snapshots, "force": force}
            _run(plan, op, body, wait, as_json)

        command.__doc__ = doc
        return command

    for verb, op, doc in (
        ("failover", "plannedFailover", "Planned failover of the whole plan, group by group "
         "(after reprotect to on-premises: its failback)."),
        ("failback", "plannedFailover", "Fail the whole plan back to on-premises."),
        ("unplanned-failover", "unplannedFailover", "Unplanned failover of the whole plan."),
        ("commit", "commit", "Commit the plan's failover."),
        ("reprotect", "reprotect", "Reprotect every item of the plan."),
        ("test-failover", "testFailover", "Test failover of the whole plan."),
        ("test-failover-cleanup", "testFailoverCleanup", "Clean up the plan's test failover."),
    ):  # fmt: skip
        plans.command(verb)(operation(op, doc))

    app.add_typer(plans, name="plans")
