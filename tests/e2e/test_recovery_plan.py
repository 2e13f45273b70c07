"""A three-tier recovery plan in a lab of its own: database, app and web fail
over group by group with scripts run in order, a manual step holds the web
tier until approved, DNS moves once at the end; a failing script stops the
commit and `vmdr plans resume` finishes it without redoing anything."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.routing.test_dns_and_probes import resolve
from tests.helpers import add_site_endpoints, app_servers, running_lab, vmdr_json, wait_resolves
from vmdr.lab.lab import Lab

TIERS = ("db-01", "app-01", "web-01")


@pytest.fixture(scope="module")
def plan_lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("plan-lab"), request.session) as lab:
        yield lab


def vmdr(lab: Lab, *args: str) -> tuple[int, Any]:
    return vmdr_json(lab, *args)


def ok(lab: Lab, *args: str) -> Any:
    code, out = vmdr(lab, *args)
    assert code == 0, out
    return out


def wait_for_approval(lab: Lab, job_id: str) -> None:
    deadline = time.monotonic() + 300
    while True:
        job = ok(lab, "jobs", "show", job_id)
        if any((e["message"] or "").startswith("waiting for approval") for e in job["events"]):
            return
        # Not over: queued until a worker takes it up (plans are looked for
        # every few seconds), then running until the approval.
        assert job["state"] in ("queued", "running"), job
        assert time.monotonic() < deadline
        time.sleep(0.3)


def states(lab: Lab) -> dict[str, str]:
    return {i["vm"]: i["state"] for i in ok(lab, "items", "list") if i["vm"] in TIERS}


def test_a_three_tier_plan_fails_over_in_order_and_resumes_after_a_failing_script(
    plan_lab: Lab,
) -> None:
    lab = plan_lab
    scripts = Path(lab.state().service("configuration-server").details["state"]) / "scripts"  # type: ignore[union-attr]
    (scripts / "record.sh").write_text('#!/bin/sh\necho "$1 $VMDR_PLAN_OPERATION" >> order.log\n')
    (scripts / "fail-once.sh").write_text(
        '#!/bin/sh\nif [ -e fail-once ]; then rm fail-once; echo "not ready yet"; exit 3; fi\n'
    )
    for script in scripts.iterdir():
        script.chmod(0o755)
    order = scripts / "order.log"

    with app_servers("127.0.0.2", "127.0.0.3") as servers:
        for vm in TIERS:
            ok(lab, "protect", vm)
        ok(lab, "traffic", "create", "shop", "--dns-name", "shop")
        add_site_endpoints(lab, "shop", servers)
        dns = wait_resolves(lab, "shop", ["127.0.0.2"])

        spec = {
            "groups": [
                {
                    "name": "database",
                    "items": ["db-01"],
                    "after": [{"kind": "script", "script": "record.sh", "args": ["database"]}],
                },
                {
                    "name": "app",
                    "items": ["app-01"],
                    "after": [{"kind": "script", "script": "record.sh", "args": ["app"]}],
                },
                {
                    "name": "web",
                    "items": ["web-01"],
                    "before": [{"kind": "manual", "message": "Does the app tier answer?"}],
                    "after": [
                        {"kind": "script", "script": "record.sh", "args": ["web"]},
                        {"kind": "script", "script": "fail-once.sh"},
                    ],
                },
            ],
            "after": [
                {"kind": "probe", "profile": "shop", "endpoint": "cloud"},
                {"kind": "cutover", "profile": "shop", "site": "recovery"},
            ],
        }
        plan_file = lab.directory / "three-tier.json"
        plan_file.write_text(json.dumps(spec))
        ok(lab, "plans", "create", "three-tier", "--file", str(plan_file))

        # Failover: the database and app tiers go, the web tier waits for a person.
        started = ok(lab, "plans", "failover", "three-tier", "--no-wait")
        wait_for_approval(lab, started["job"])
        assert states(lab) == {"db-01": "FailedOver", "app-01": "FailedOver", "web-01": "Protected"}
        assert order.read_text().split("\n")[:2] == [
            "database plannedFailover",
            "app plannedFailover",
        ]
        assert resolve(dns, "shop") == ["127.0.0.2"]  # DNS waits for the end of the plan
        ok(lab, "plans", "approve", "three-tier")
        job = ok(lab, "jobs", "watch", started["job"])
        assert job["state"] == "succeeded"
        assert set(states(lab).values()) == {"FailedOver"}
        assert order.read_text().splitlines() == [
            "database plannedFailover",
            "app plannedFailover",
            "web plannedFailover",
        ]
        assert resolve(dns, "shop") == ["127.0.0.3"]
        moves = [e for e in ok(lab, "traffic", "show", "shop")["events"] if e["kind"] == "dns"]
        assert len(moves) == 2 and "plan" not in moves[0]["message"]  # initial, then one cutover
        assert "cutover to recovery" in moves[1]["message"]

        # Commit: a script fails after the web tier; resume finishes without redoing.
        (scripts / "fail-once").write_text("")
        started = ok(lab, "plans", "commit", "three-tier", "--no-wait")
        wait_for_approval(lab, started["job"])
        ok(lab, "plans", "approve", "three-tier")
        code, failed = vmdr(lab, "jobs", "watch", started["job"])
        assert code == 1 and failed["state"] == "failed"
        assert (
            failed["error"]["code"] == "VMDR-E0910" and "fail-once.sh" in failed["error"]["message"]
        )
        assert set(states(lab).values()) == {"Committed"}
        commits_before = order.read_text().count("commit")
        resumed = ok(lab, "plans", "resume", "three-tier")
        assert resumed["state"] == "succeeded"
        assert order.read_text().count("commit") == commits_before == 3  # nothing ran twice
        assert not any(
            (e["message"] or "").startswith("waiting for approval") for e in resumed["events"]
        )  # the approval stands
        shown = ok(lab, "plans", "show", "three-tier")
        assert [r["state"] for r in shown["runs"]][:2] == ["succeeded", "failed"]


def test_a_script_outside_the_scripts_folder_is_refused(plan_lab: Lab) -> None:
    for bad in ("../../bin/sh", "/bin/sh"):
        spec = {
            "groups": [
                {"name": "g", "items": ["web-01"], "before": [{"kind": "script", "script": bad}]}
            ]
        }
        plan_file = plan_lab.directory / "bad.json"
        plan_file.write_text(json.dumps(spec))
        code, out = vmdr(plan_lab, "plans", "create", "bad", "--file", str(plan_file))
        assert code == 1 and out["error"]["code"] == "VMDR-E0001", out
        assert "script" in out["error"]["message"]
    code, out = vmdr(plan_lab, "plans", "show", "nope")
    assert code == 1 and out["error"]["code"] == "VMDR-E0911"
