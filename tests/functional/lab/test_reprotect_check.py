"""`vmdr reprotect MACHINE --check` in the lab: each lab machine meets the rule
of the source documents it was built for, through the real configuration
server, its discovery of the lab's vCenter and ESX host, and the roles'
heartbeats (the process server's probe of the master target included)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.functional.lab.test_lab_cli import _vmdr
from vmdr.lab.lab import Lab


def check(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    result = _vmdr(lab, "reprotect", *args, "--check", "--json")
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def errors(report: dict[str, Any]) -> list[str]:
    return [f["code"] for f in report["findings"] if f["severity"] == "error"]


def test_web_01_can_start_original_location_recovery(lab: Lab) -> None:
    status, report = check(lab, "web-01")
    assert status == 0, report
    assert (report["ok"], report["mode"], report["findings"]) == (True, "OLR", [])
    assert [(d["method"], d["confidence"]) for d in report["disks"]] == [("uuid", "exact")] * 2
    assert [d["original"] for d in report["disks"]] == [
        "[vmfs-01] web-01/web-01.vmdk", "[vmfs-01] web-01/web-01_1.vmdk",
    ]  # fmt: skip


def test_app_01_is_refused_for_its_snapshot_until_asked_to_remove_it(lab: Lab) -> None:
    status, report = check(lab, "app-01")
    assert status == 1 and errors(report) == ["VMDR-E0803"]
    (finding,) = report["findings"]
    assert finding["message"] == "VM app-01 has 1 snapshot; reprotect cannot start."
    assert "vmdr reprotect app-01 --remove-snapshots" in finding["fix"]
    status, report = check(lab, "app-01", "--remove-snapshots")
    assert status == 0 and report["ok"]


def test_db_01_without_enable_uuid_is_matched_best_effort(lab: Lab) -> None:
    status, report = check(lab, "db-01")
    assert status == 0 and report["mode"] == "OLR"
    assert [(f["code"], f["severity"]) for f in report["findings"]] == [("VMDR-W0821", "warning")]
    assert [d["method"] for d in report["disks"]] == ["unit+capacity"]


def test_legacy_01_runs_a_guest_that_cannot_be_failed_back(lab: Lab) -> None:
    status, report = check(lab, "legacy-01")
    assert status == 1
    # Also on nfs-01, which only the standalone host mounts, not the master target's.
    assert errors(report) == ["VMDR-E0810", "VMDR-E0804"]


def test_branch_01_lives_where_the_master_target_cannot_reach(lab: Lab) -> None:
    status, report = check(lab, "branch-01")
    assert status == 1 and errors(report) == ["VMDR-E0804"]
    assert "branch-local" in report["findings"][0]["message"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("--alr",), "VMDR-E0819"),
        (("--alr", "--datastore", "nfs-01"), "VMDR-E0806"),
        (("--alr", "--datastore", "branch-local"), "VMDR-E0804"),
    ],
)
def test_alternate_location_datastore_rules(lab: Lab, args: tuple[str, ...], code: str) -> None:
    status, report = check(lab, "web-01", *args)
    assert status == 1 and report["mode"] == "ALR" and errors(report) == [code]


def test_alternate_location_onto_vmfs_or_vsan_can_start(lab: Lab) -> None:
    for datastore in ("vmfs-01", "vsan-01"):
        status, report = check(lab, "web-01", "--alr", "--datastore", datastore)
        assert status == 0 and report["mode"] == "ALR", report


def test_a_machine_unknown_to_the_configuration_server_cannot_fail_back(lab: Lab) -> None:
    status, report = check(lab, "phys-01")  # the lab's physical server was never registered
    assert status == 1 and errors(report) == ["VMDR-E0801"]


def test_the_check_in_a_terminal_less_pipe_prints_the_code(lab: Lab) -> None:
    result = _vmdr(lab, "reprotect", "app-01", "--check")
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == "reprotect app-01: OLR\trefused"
    assert result.stdout.splitlines()[1].startswith("VMDR-E0803\terror\t")
    # Without --check it is the operation itself, on a protected item only.
    without = _vmdr(lab, "reprotect", "app-01")
    assert without.returncode == 1 and "VMDR-E0543" in without.stderr
    assert "vmdr protect VM" in without.stderr
