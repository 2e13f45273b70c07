"""A replication group in a lab of its own: db-01 and app-01 share their
recovery points. An application writes a counter to db-01's disk, then the
same counter to app-01's, as fast as it can. A group point, cut between the
group's quiesce and thaw scripts (here: SIGSTOP and SIGCONT of the writer),
must hold the same counter on both VMs, or db-01 one ahead (the writer was
stopped between its two writes); one moment for both, never two. The
replicator then cuts group points by itself, instead of per-VM ones. Test
failover and a plan's unplanned failover take every member from one group
point."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import blob_client, running_lab, snapshot_count, vmdr_json
from vmdr.lab.lab import Lab
from vmdr.lab.state import load_inventory

MEMBERS = ("db-01", "app-01")
OFFSET = 40 << 20  # where the writer keeps its counter, on both disks
WRITER = """
import struct, sys
from vmdr.lab import guest  # the write, and the change ESX would track
n = 0
while True:
    n += 1
    for path in sys.argv[1:]:  # db-01 first, then app-01
        guest.write(path, {offset}, struct.pack("<Q", n))
"""


@pytest.fixture(scope="module")
def group_lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("group-lab"), request.session) as lab:
        yield lab


@pytest.fixture(scope="module")
def writer(group_lab: Lab) -> Iterator[subprocess.Popen[bytes]]:
    """The application, with the quiesce and thaw scripts that stop and
    continue it (a real pause of its I/O, as fsfreeze would be)."""
    lab = group_lab
    for vm in MEMBERS:
        ok(lab, "protect", vm)
    disks = [flat(lab, vm) for vm in MEMBERS]
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(offset=OFFSET), *map(str, disks)])
    scripts = scripts_folder(lab)
    (scripts / "writer.pid").write_text(str(proc.pid))
    (scripts / "freeze.sh").write_text('#!/bin/sh\nkill -STOP "$(cat writer.pid)"\necho frozen\n')
    (scripts / "thaw.sh").write_text('#!/bin/sh\nkill -CONT "$(cat writer.pid)"\necho thawed\n')
    for name in ("freeze.sh", "thaw.sh"):
        (scripts / name).chmod(0o755)
    yield proc
    proc.kill()
    proc.wait()


def ok(lab: Lab, *args: str) -> Any:
    code, out = vmdr_json(lab, *args)
    assert code == 0, out
    return out


def flat(lab: Lab, vm: str) -> Path:
    found = next(v for v in load_inventory(lab.directory)["vms"] if v["name"] == vm)
    return Path(found["disks"][0]["flat_path"])


def scripts_folder(lab: Lab) -> Path:
    state = lab.state()
    assert state is not None
    return Path(state.service("configuration-server").details["state"]) / "scripts"


def counter_at(lab: Lab, blob_url: str) -> int:
    """The writer's counter in a page blob or a snapshot, read with the SDK."""
    with blob_client(lab, blob_url) as blob:
        data = blob.download_blob(offset=OFFSET, length=8).readall()
    return int(struct.unpack("<Q", data)[0])


def counters(lab: Lab, point: dict[str, Any]) -> dict[str, int]:
    """Each member's counter in its disk 0 at this group point."""
    out = {}
    for vm, seq in point["points"].items():
        rows = ok(lab, "items", "points", vm)
        location = next(p for p in rows if p["seq"] == seq)["disks"]["0"]
        out[vm] = counter_at(lab, location)
    return out


def assert_one_moment(values: dict[str, int]) -> None:
    db, app = values["db-01"], values["app-01"]
    assert db > 0, values
    assert 0 <= db - app <= 1, f"not one moment across the group: {values}"


def test_group_points_hold_one_moment_of_the_application(
    group_lab: Lab, writer: subprocess.Popen[bytes]
) -> None:
    lab = group_lab
    group = ok(lab, "groups", "create", "shop", "--item", "db-01", "--item", "app-01",
               "--quiesce", "freeze.sh", "--thaw", "thaw.sh")  # fmt: skip
    assert group["vms"] == list(MEMBERS) and group["points"] == []
    deadline = time.monotonic() + 60  # the replicator cuts a group's first point at once
    while not ok(lab, "groups", "show", "shop")["points"]:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    wait_idle(lab)
    for _ in range(2):
        job = ok(lab, "groups", "point", "shop")
        assert job["state"] == "succeeded", job
        messages = " ".join(e["message"] or "" for e in job["events"])
        assert "frozen" in messages and "thawed" in messages
    points = ok(lab, "groups", "show", "shop")["points"]
    assert [p["group_point"] for p in points] == [1, 2, 3]
    seen = [counters(lab, p) for p in points]
    for values in seen:
        assert_one_moment(values)
    assert seen[1]["db-01"] > seen[0]["db-01"]  # the writer ran between the points
    # The application runs again after the cut (the thaw is never skipped).
    before = flat(lab, "db-01").read_bytes()[OFFSET : OFFSET + 8]
    time.sleep(0.2)
    assert flat(lab, "db-01").read_bytes()[OFFSET : OFFSET + 8] != before
    # Both members carry the group's points as ordinary points, same time, same tag.
    for vm in MEMBERS:
        mine = [p for p in ok(lab, "items", "points", vm) if p["tag"] == "group:shop"]
        assert [p["time"] for p in mine] == [p["time"] for p in points]


def test_the_replicator_cuts_group_points_instead_of_per_vm_ones(
    group_lab: Lab, writer: subprocess.Popen[bytes]
) -> None:
    """...and keeps only ``point_retention`` of them, their snapshots deleted
    with them (the members' per-VM points from before are pruned too)."""
    lab = group_lab
    plane_file = lab.directory / "configuration-server" / "dataplane.json"
    plane = json.loads(plane_file.read_text())
    started = time.time()
    newest_before = max(
        (p["group_point"] for p in ok(lab, "groups", "show", "shop")["points"]), default=0
    )
    try:
        fast = {**plane, "replication_interval": 2, "point_retention": 2}
        plane_file.write_text(json.dumps(fast))
        deadline = time.monotonic() + 120
        while True:
            points = ok(lab, "groups", "show", "shop")["points"]
            cut = max((p["group_point"] for p in points), default=0) - newest_before
            if cut >= 3 and len([p for p in points if p["time"] > started]) >= 2:
                break
            assert time.monotonic() < deadline
            time.sleep(1)
        # No new cycle from here; the one running prunes to 2 as well.
        plane_file.write_text(json.dumps({**plane, "point_retention": 2}))
        wait_idle(lab)
    finally:
        plane_file.write_text(json.dumps(plane))
    assert len(ok(lab, "groups", "show", "shop")["points"]) == 2
    held = 0
    for vm in MEMBERS:
        points = ok(lab, "items", "points", vm)
        assert len([p for p in points if p["tag"] == "group:shop"]) == 2, points
        assert len([p for p in points if p["tag"] == "continuous"]) <= 2, points
        held += sum(len(p["disks"]) for p in points)
    assert snapshots_of_members(lab) == held  # the pruned points' snapshots are gone
    for vm in MEMBERS:
        later = [p for p in ok(lab, "items", "points", vm) if p["time"] > started]
        assert later and {p["tag"] for p in later} == {"group:shop"}, later
    for point in ok(lab, "groups", "show", "shop")["points"]:
        if point["time"] > started:
            assert_one_moment(counters(lab, point))


def test_a_failing_quiesce_still_thaws_and_leaves_no_point_and_no_snapshot(
    group_lab: Lab, writer: subprocess.Popen[bytes]
) -> None:
    lab = group_lab
    scripts = scripts_folder(lab)
    freeze = scripts / "freeze.sh"
    good = freeze.read_text()
    wait_idle(lab)
    before = ok(lab, "groups", "show", "shop")["points"]
    snapshots = snapshots_of_members(lab)
    assert snapshots >= 2 * len(before)  # every group point holds one per member disk
    marker = scripts / "thawed-after-failure"
    try:
        freeze.write_text(
            '#!/bin/sh\nkill -STOP "$(cat writer.pid)"\necho "cannot freeze"\nexit 4\n'
        )
        (scripts / "thaw.sh").write_text(
            '#!/bin/sh\nkill -CONT "$(cat writer.pid)"\ntouch thawed-after-failure\n'
        )
        code, out = vmdr_json(lab, "groups", "point", "shop")
        assert code == 1 and out["error"]["code"] == "VMDR-E0916", out
        assert "quiesce script exited 4" in out["error"]["message"]
    finally:
        freeze.write_text(good)
        (scripts / "thaw.sh").write_text('#!/bin/sh\nkill -CONT "$(cat writer.pid)"\necho thawed\n')
    assert marker.exists()  # the thaw ran although the quiesce failed
    counter = flat(lab, "db-01").read_bytes()[OFFSET : OFFSET + 8]
    time.sleep(0.2)
    assert flat(lab, "db-01").read_bytes()[OFFSET : OFFSET + 8] != counter  # writing again
    assert ok(lab, "groups", "show", "shop")["points"] == before
    assert snapshots_of_members(lab) == snapshots  # nothing left in the storage account


def snapshots_of_members(lab: Lab) -> int:
    return sum(
        snapshot_count(lab, disk["blob"])
        for vm in MEMBERS
        for disk in ok(lab, "items", "show", vm)["disks"]
    )


def test_test_failover_and_a_plans_failover_take_every_member_from_one_group_point(
    group_lab: Lab, writer: subprocess.Popen[bytes]
) -> None:
    lab = group_lab
    wait_idle(lab)
    newest = ok(lab, "groups", "show", "shop")["points"][-1]
    tested = ok(lab, "groups", "test-failover", "shop")
    assert tested["group_point"] == newest["group_point"]
    by_vm = {vm_of(lab, j["item"]): j["recovery_point"] for j in tested["jobs"]}
    assert by_vm == newest["points"]
    assert all(j["state"] == "succeeded" for j in tested["jobs"]), tested
    for vm in MEMBERS:
        assert ok(lab, "items", "show", vm)["test_failover"]["point"] == newest["points"][vm]
        ok(lab, "test-failover-cleanup", vm)

    # A recovery plan's unplanned failover: the plan's groups run one after
    # the other, yet every member comes from the same group point.
    wait_idle(lab)
    newest = ok(lab, "groups", "show", "shop")["points"][-1]
    spec = {"groups": [{"name": "db", "items": ["db-01"]}, {"name": "app", "items": ["app-01"]}]}
    spec_file = lab.directory / "shop-plan.json"
    spec_file.write_text(json.dumps(spec))
    ok(lab, "plans", "create", "shop", "--file", str(spec_file))
    run = ok(lab, "plans", "unplanned-failover", "shop")
    assert run["state"] == "succeeded", run
    for vm in MEMBERS:
        shown = ok(lab, "items", "show", vm)
        assert shown["state"] == "FailedOver"
        assert shown["failed_over_at_point"] == newest["points"][vm]
    # The group cuts nothing while its members are failed over.
    assert ok(lab, "groups", "show", "shop")["points"][-1] == newest


def test_a_group_refuses_bad_members_and_unknown_points(group_lab: Lab) -> None:
    lab = group_lab
    code, out = vmdr_json(lab, "groups", "create", "again", "--item", "db-01", "--item", "app-01")
    assert code == 1 and out["error"]["code"] == "VMDR-E0915", out  # both are in shop
    code, out = vmdr_json(lab, "groups", "create", "new", "--item", "db-01", "--item", "web-01")
    assert code == 1 and out["error"]["code"] == "VMDR-E0543", out  # web-01 is not protected
    code, out = vmdr_json(lab, "groups", "create", "solo", "--item", "db-01")
    assert code == 1 and out["error"]["code"] == "VMDR-E0001", out  # at least two members
    code, out = vmdr_json(lab, "groups", "test-failover", "shop", "--point", "999")
    assert code == 1 and out["error"]["code"] == "VMDR-E0916", out
    code, out = vmdr_json(lab, "groups", "point", "shop")  # members are failed over
    assert code == 1 and out["error"]["code"] == "VMDR-E0916", out
    code, out = vmdr_json(lab, "groups", "show", "nope")
    assert code == 1 and out["error"]["code"] == "VMDR-E0914", out


def vm_of(lab: Lab, item: str) -> str:
    return str(ok(lab, "items", "show", item)["vm"])


def wait_idle(lab: Lab) -> None:
    """No group point or operation in progress on the members."""
    deadline = time.monotonic() + 120
    while any(
        j["state"] in ("queued", "running") and j["kind"] in ("groupPoint", "replicate")
        for j in ok(lab, "jobs", "list")
    ):
        assert time.monotonic() < deadline
        time.sleep(0.5)


def test_a_plan_level_failback_drill_leaves_production_untouched(
    group_lab: Lab, writer: subprocess.Popen[bytes]
) -> None:
    """After the plan's failover: commit and reprotect home by plan, then a
    plan-wide test failover in the recovery -> primary direction. Each member
    gets a scratch VM built from the replica; the real on-premises disks do not
    change and the cloud VMs keep running; the plan's cleanup removes the
    scratch VMs."""
    from vmdr.lab.lab import vcenter_endpoint
    from vmdr.providers.vsphere.control import VmNotFound, find_vm
    from vmdr.providers.vsphere.session import session

    lab = group_lab
    writer.kill()  # the application now runs in the cloud
    writer.wait()
    for verb, extra in (("commit", ()), ("reprotect", ("--remove-snapshots",))):
        run = ok(lab, "plans", verb, "shop", *extra)
        assert run["state"] == "succeeded", run
    for vm in MEMBERS:
        shown = ok(lab, "items", "show", vm)
        assert (shown["state"], shown["direction"]) == ("Protected", "recoveryToPrimary")
    production = {vm: file_sha(flat(lab, vm)) for vm in MEMBERS}

    run = ok(lab, "plans", "test-failover", "shop")
    assert run["state"] == "succeeded", run
    drills = {}
    for vm in MEMBERS:
        shown = ok(lab, "items", "show", vm)
        assert shown["state"] == "TestFailoverCompleted"
        drills[vm] = shown["test_failover"]["vm"]
        assert drills[vm] == f"{vm}-drill"
        assert file_sha(flat(lab, vm)) == production[vm]  # production untouched
    cloud = json.loads((lab.directory / "cloud-vms" / "cloud-vms.json").read_text())
    assert all(cloud[vm]["state"] == "running" for vm in MEMBERS)
    with session(vcenter_endpoint(lab.directory)) as si:
        for drill in drills.values():
            find_vm(si, drill)  # exists

    run = ok(lab, "plans", "test-failover-cleanup", "shop")
    assert run["state"] == "succeeded", run
    with session(vcenter_endpoint(lab.directory)) as si:
        for drill in drills.values():
            with pytest.raises(VmNotFound):
                find_vm(si, drill)
    for vm in MEMBERS:
        assert ok(lab, "items", "show", vm)["state"] == "Protected"
        assert file_sha(flat(lab, vm)) == production[vm]


def file_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
