"""The whole cycle of the source documents on one VM, through the CLI and the
configuration server's durable jobs, in a lab of its own: protect → planned
failover → the workload runs in the cloud → commit → reprotect (original
location, differential) → failback with its proof → commit → reprotect to the
cloud (the delta only). At every stage the bytes of every disk are checked
independently: page blobs read with the Azure SDK, VMDK extents read from the
datastore folder, compared by SHA-256."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    add_site_endpoints,
    app_servers,
    blob_client,
    running_lab,
    vmdr_json,
    wait_resolves,
)
from vmdr.lab import guest
from vmdr.lab.lab import Lab, vcenter_endpoint
from vmdr.lab.state import load_inventory

VM = "web-01"


@pytest.fixture(scope="module")
def cycle_lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("cycle-lab"), request.session) as lab:
        yield lab


def vmdr(lab: Lab, *args: str, timeout: float = 600) -> Any:
    return vmdr_json(lab, *args, timeout=timeout)


def succeeded(lab: Lab, *args: str) -> dict[str, Any]:
    code, job = vmdr(lab, *args)
    assert code == 0 and job["state"] == "succeeded", job
    return job


def _blob(lab: Lab, blob_url: str, read: Any) -> Any:
    with blob_client(lab, blob_url) as blob:
        return read(blob)


def blob_sha(lab: Lab, blob_url: str) -> str:
    data = _blob(lab, blob_url, lambda b: b.download_blob(max_concurrency=4).readall())
    return hashlib.sha256(data).hexdigest()


def snapshot_sha(lab: Lab, snapshot_url: str) -> str:
    """A recovery point's disk: ``pageblob://ACCOUNT/CONTAINER/BLOB?snapshot=TS``."""
    return blob_sha(lab, snapshot_url)


def blob_etag(lab: Lab, blob_url: str) -> str:
    return str(_blob(lab, blob_url, lambda b: b.get_blob_properties().etag))


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def power_state(lab: Lab) -> str:
    from vmdr.providers.vsphere.control import find_vm
    from vmdr.providers.vsphere.control import power_state as state_of
    from vmdr.providers.vsphere.session import session

    with session(vcenter_endpoint(lab.directory)) as si:
        return state_of(si, find_vm(si, VM))


def master_target_disks(lab: Lab) -> dict[str, str]:
    """The disks vCenter shows attached to the master target's VM beyond its
    own (file -> UUID), and that its guest sees them under by-id."""
    from pyVmomi import vim

    from vmdr.lab.roles import LAB_MASTER_TARGET_VM as MT
    from vmdr.providers.vsphere.control import attached_disks, find_vm
    from vmdr.providers.vsphere.session import retrieve, session
    from vmdr.roles.byid import DeviceFolder

    with session(vcenter_endpoint(lab.directory)) as si:
        appliance = find_vm(si, MT)
        disks = attached_disks(si, appliance)
        devices = retrieve(si, appliance, ["config.hardware.device"])["config.hardware.device"]
    count = sum(isinstance(d, vim.vm.device.VirtualDisk) for d in devices)
    assert count == len(disks), "a VMDK is attached twice"
    others = {f: u for f, u in disks.items() if f"] {MT}/" not in f}
    seen = DeviceFolder(lab.directory / "by-id" / MT)
    assert all(len(seen.devices(u)) == 1 for u in others.values())
    return others


def item(lab: Lab, vm: str = VM) -> dict[str, Any]:
    code, data = vmdr(lab, "items", "show", vm)
    assert code == 0, data
    return data


def test_protect_fail_over_reprotect_fail_back_and_protect_again(cycle_lab: Lab) -> None:
    lab = cycle_lab
    flats = {
        d["unit"]: Path(d["flat_path"])
        for d in next(v for v in load_inventory(lab.directory)["vms"] if v["name"] == VM)["disks"]
    }

    # 1. Protect: every disk replicated to a page blob, byte for byte.
    succeeded(lab, "protect", VM)
    protected = item(lab)
    assert (protected["state"], protected["direction"]) == ("Protected", "primaryToRecovery")
    blobs = {d["unit"]: d["blob"] for d in protected["disks"]}
    for unit, flat in flats.items():
        assert blob_sha(lab, blobs[unit]) == file_sha(flat)

    # 2. The application writes on-premises; a planned failover loses none of it.
    guest.write(flats[0], 3 << 20, b"written on-premises just before failover" * 100)
    succeeded(lab, "failover", VM)
    assert power_state(lab) == "poweredOff"
    # The cloud VM writes at once; the failover's recovery point is the proof.
    code, points = vmdr(lab, "items", "points", VM)
    assert code == 0 and [p["tag"] for p in points] == ["initial", "planned-failover"]
    for unit, flat in flats.items():
        assert snapshot_sha(lab, points[-1]["disks"][str(unit)]) == file_sha(flat)
    failed_over = item(lab)
    assert (failed_over["state"], failed_over["active_site"]) == ("FailedOver", "recovery")

    # 3. The workload runs in the cloud and changes the cloud disks.
    before = {u: blob_etag(lab, b) for u, b in blobs.items()}
    deadline = time.monotonic() + 30
    while all(blob_etag(lab, b) == before[u] for u, b in blobs.items()):
        assert time.monotonic() < deadline, "the cloud workload wrote nothing"
        time.sleep(1)
    succeeded(lab, "commit", VM)

    # 4. Reprotect to on-premises: the original VM exists -> OLR, differential.
    #    First the transfer plan: what would cross, per disk, computed from hashes.
    code, plan = vmdr(lab, "reprotect", VM, "--plan")
    assert code == 0, plan
    assert plan["mode"] == "OLR" and plan["findings"] == []
    assert [d["target"] for d in plan["disks"]] == [
        f"[vmfs-01] {VM}/{VM}.vmdk",
        f"[vmfs-01] {VM}/{VM}_1.vmdk",
    ]
    assert 0 < plan["bytes"] < plan["capacity"] // 4
    assert item(lab)["state"] == "Committed"  # the plan changed nothing
    succeeded(lab, "reprotect", VM)
    reprotected = item(lab)
    assert reprotected["recovery_type"] == "OLR"
    assert (reprotected["state"], reprotected["direction"]) == ("Protected", "recoveryToPrimary")
    sizes = {d["unit"]: d["capacity"] for d in reprotected["disks"]}
    for unit, sent in reprotected["reprotect_sent"].items():
        assert int(sent) < sizes[int(unit)] // 4, "OLR must send only changed blocks"
    # The master target writes the original VMDKs attached to its VM.
    assert sorted(master_target_disks(lab)) == [f"[vmfs-01] {VM}/{VM}.vmdk",
                                               f"[vmfs-01] {VM}/{VM}_1.vmdk"]  # fmt: skip

    # 5. Fail back: cloud VM stopped, final sync, proof, on-premises VM on.
    succeeded(lab, "failback", VM)
    back = item(lab)
    assert (back["state"], back["active_site"]) == ("FailedOver", "primary")
    assert power_state(lab) == "poweredOn"
    assert master_target_disks(lab) == {}  # detached before the VM was powered on
    proof = back["failback_proof"]
    assert set(proof) == {str(u) for u in flats} and all(p["equal"] for p in proof.values())
    for unit, flat in flats.items():
        digest = file_sha(flat)
        assert blob_sha(lab, blobs[unit]) == digest  # independent of vmdr's own proof

    # 6. Commit deletes the cloud VM.
    succeeded(lab, "commit", VM)
    cloud_vms = json.loads((lab.directory / "cloud-vms" / "cloud-vms.json").read_text())
    assert VM not in cloud_vms

    # 7. Reprotect to the cloud again: only the delta travels.
    guest.write(flats[1], 5 << 20, b"back home" * 1000)
    code, plan = vmdr(lab, "reprotect", VM, "--plan")
    assert code == 0 and plan["mode"] == "delta", plan
    succeeded(lab, "reprotect", VM)
    again = item(lab)
    assert (again["state"], again["direction"]) == ("Protected", "primaryToRecovery")
    moved = sum(again["last_sync"]["bytes"].values())
    assert 0 < moved <= 2 * (64 << 10), moved  # the one write, in 64 KiB blocks
    assert plan["bytes"] == moved  # the plan said exactly what then crossed
    for unit, flat in flats.items():
        assert blob_sha(lab, blobs[unit]) == file_sha(flat)


def _fail_over_and_commit(lab: Lab, vm: str) -> dict[str, Any]:
    succeeded(lab, "protect", vm)
    succeeded(lab, "failover", vm)
    succeeded(lab, "commit", vm)
    return item(lab, vm)


def test_deleting_the_original_vm_turns_failback_into_alr(cycle_lab: Lab) -> None:
    """db-01 is deleted on-premises after failover: reprotect creates a new VM
    on the master target's ESX host, on the chosen datastore, and copies in
    full; failback powers that VM on, its disks equal to the cloud's."""
    from vmdr.providers.vsphere.control import delete_vm, find_vm, vm_datastores
    from vmdr.providers.vsphere.session import session

    lab, vm = cycle_lab, "db-01"
    committed = _fail_over_and_commit(lab, vm)
    with session(vcenter_endpoint(lab.directory)) as si:
        delete_vm(si, find_vm(si, vm))
    # Without a datastore for the new VM, the precheck refuses and says how.
    code, job = vmdr(lab, "reprotect", vm)
    assert code == 1 and job["error"]["code"] == "VMDR-E0819", job
    assert item(lab, vm)["state"] == "Committed"
    succeeded(lab, "reprotect", vm, "--datastore", "vmfs-01")
    reprotected = item(lab, vm)
    assert reprotected["recovery_type"] == "ALR"
    succeeded(lab, "failback", vm)
    back = item(lab, vm)
    assert all(p["equal"] for p in back["failback_proof"].values())
    mt_host = _master_target_host(lab)
    with session(vcenter_endpoint(lab.directory)) as si:
        new = find_vm(si, vm)  # the same name, a new VM
        assert vm_datastores(si, new) == ["vmfs-01"]
        from vmdr.providers.vsphere.session import retrieve

        host = retrieve(si, retrieve(si, new, ["runtime.host"])["runtime.host"], ["name"])["name"]
    assert host == mt_host
    datastores = {
        d["name"]: Path(d["path"]) for d in load_inventory(lab.directory)["topology"]["datastores"]
    }
    for disk in committed["disks"]:
        suffix = "" if disk["unit"] == 0 else f"_{disk['unit']}"
        flat = datastores["vmfs-01"] / vm / f"{vm}{suffix}-flat.vmdk"
        assert blob_sha(lab, disk["blob"]) == file_sha(flat)
        # A full copy: the whole disk's data crossed, not a delta.
        assert int(reprotected["reprotect_sent"][str(disk["unit"])]) > 0
    succeeded(lab, "commit", vm)


def _master_target_host(lab: Lab) -> str:
    code, mts = vmdr(lab, "master-targets", "list")
    assert code == 0, mts
    code, hosts = vmdr(lab, "hosts", "list")
    assert code == 0, hosts
    host_id = next(m for m in mts if m["name"] == "lab")["vm"]["host"]
    return str(next(h["name"] for h in hosts if h["id"] == host_id))


def test_a_snapshot_refuses_reprotect_until_it_is_removed(cycle_lab: Lab) -> None:
    lab, vm = cycle_lab, "app-01"
    _fail_over_and_commit(lab, vm)
    code, job = vmdr(lab, "reprotect", vm)
    assert code == 1 and job["state"] == "failed"
    assert job["error"]["code"] == "VMDR-E0803"
    assert "app-01 has 1 snapshot" in job["error"]["message"]
    assert "--remove-snapshots" in job["error"]["fix"]
    refused = item(lab, vm)
    assert refused["state"] == "Committed" and "VMDR-E0803" in refused["last_error"]
    succeeded(lab, "reprotect", vm, "--remove-snapshots")
    from vmdr.providers.vsphere.control import find_vm, snapshot_names
    from vmdr.providers.vsphere.session import session

    with session(vcenter_endpoint(lab.directory)) as si:
        assert snapshot_names(si, find_vm(si, vm)) == []
    succeeded(lab, "failback", vm)
    succeeded(lab, "commit", vm)


def test_a_configuration_server_killed_during_reprotect_resumes_it(cycle_lab: Lab) -> None:
    """The process server is paused so the reprotect job is certainly inside
    its start-replication step; the configuration server is killed with
    SIGKILL there, started again, and the job finishes; failback then proves
    the disks identical (and they are, read independently)."""
    import signal

    from vmdr.lab import process

    lab, vm = cycle_lab, "web-01"
    succeeded(lab, "failover", vm)  # web-01 is protected again after the first test
    succeeded(lab, "commit", vm)
    state = lab.state()
    assert state is not None
    ps = state.service("process-server").process
    process.signal_process(ps, signal.SIGSTOP)
    try:
        code, started = vmdr(lab, "reprotect", vm, "--no-wait")
        assert code == 0, started
        deadline = time.monotonic() + 60
        while True:
            _, job = vmdr(lab, "jobs", "show", started["job"])
            if ("start-replication", "start") in [(e["step"], e["kind"]) for e in job["events"]]:
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        time.sleep(0.5)
        lab.restart("configuration-server", kill=True)
    finally:
        process.signal_process(ps, signal.SIGCONT)
    code, job = vmdr(lab, "jobs", "watch", started["job"])
    assert code == 0 and job["state"] == "succeeded", job
    steps = [(e["step"], e["kind"]) for e in job["events"]]
    assert steps.count(("start-replication", "start")) == 2  # ran again after the restart
    assert item(lab, vm)["state"] == "Protected"
    # The attach ran twice, the disks are attached once.
    assert sorted(master_target_disks(lab)) == [f"[vmfs-01] {vm}/{vm}.vmdk",
                                               f"[vmfs-01] {vm}/{vm}_1.vmdk"]  # fmt: skip
    succeeded(lab, "failback", vm)
    assert master_target_disks(lab) == {}
    built = next(v for v in load_inventory(lab.directory)["vms"] if v["name"] == vm)
    flats = {d["unit"]: Path(d["flat_path"]) for d in built["disks"]}
    for disk in item(lab, vm)["disks"]:
        assert blob_sha(lab, disk["blob"]) == file_sha(flats[disk["unit"]])
    succeeded(lab, "commit", vm)


def test_cancel_a_planned_failover_then_fail_over_unplanned_to_an_older_point(
    cycle_lab: Lab,
) -> None:
    """branch-01 lives on an ESX host that no vCenter manages: protect it,
    write, fail over (planned), cancel (the source runs again, the cloud VM is
    gone), then an unplanned failover to the first recovery point, from
    before the write. A point that does not exist is refused with its code."""
    lab, vm = cycle_lab, "branch-01"
    built = next(v for v in load_inventory(lab.directory)["vms"] if v["name"] == vm)
    flat = Path(built["disks"][0]["flat_path"])
    succeeded(lab, "protect", vm)
    before_write = file_sha(flat)
    guest.write(flat, 1 << 20, b"written after the first recovery point" * 500)
    succeeded(lab, "failover", vm)
    code, points = vmdr(lab, "items", "points", vm)
    assert [p["tag"] for p in points] == ["initial", "planned-failover"]
    first = points[0]["disks"]["0"]
    assert snapshot_sha(lab, first) == before_write  # the point holds the old bytes
    assert snapshot_sha(lab, points[1]["disks"]["0"]) == file_sha(flat)

    code, cancelled = vmdr(lab, "failover", vm)  # not allowed: already failed over
    assert code == 1 and cancelled["error"]["code"] == "VMDR-E0501"
    succeeded(lab, "cancel-failover", vm)
    cloud_vms = json.loads((lab.directory / "cloud-vms" / "cloud-vms.json").read_text())
    assert vm not in cloud_vms
    assert item(lab, vm)["state"] == "Protected"

    code, job = vmdr(lab, "failover", vm, "--unplanned", "--recovery-point", "9")
    assert code == 1 and job["error"]["code"] == "VMDR-E0822", job
    assert item(lab, vm)["state"] == "Protected"
    succeeded(lab, "failover", vm, "--unplanned", "--recovery-point", "1")
    over = item(lab, vm)
    assert (over["state"], over["active_site"], over["planned"]) == (
        "FailedOver",
        "recovery",
        False,
    )
    assert over["failed_over_at_point"] == 1
    # An unplanned failover cannot be cancelled: the way back is commit, reprotect, failback.
    assert "cancelFailover" not in over["allowed"] and "commit" in over["allowed"]
    succeeded(lab, "commit", vm)


def test_continuous_replication_takes_points_and_reports_rpo_and_health(cycle_lab: Lab) -> None:
    """With a short interval, a protected VM's on-premises writes reach the
    cloud as new recovery points without any operation; the item shows its
    RPO and a Normal health."""
    lab, vm = cycle_lab, "legacy-01"
    plane_file = lab.directory / "configuration-server" / "dataplane.json"
    plane = json.loads(plane_file.read_text())
    flat = Path(
        next(v for v in load_inventory(lab.directory)["vms"] if v["name"] == vm)["disks"][0][
            "flat_path"
        ]
    )
    succeeded(lab, "protect", vm)
    try:
        plane_file.write_text(json.dumps({**plane, "replication_interval": 1}))
        guest.write(flat, 7 << 20, b"replicated continuously" * 300)
        want = file_sha(flat)
        deadline = time.monotonic() + 60
        while True:
            _, points = vmdr(lab, "items", "points", vm)
            continuous = [p for p in points if p["tag"] == "continuous"]
            if continuous and snapshot_sha(lab, continuous[-1]["disks"]["0"]) == want:
                break
            assert time.monotonic() < deadline, points
            time.sleep(0.5)
    finally:
        plane_file.write_text(json.dumps(plane))
    shown = item(lab, vm)
    assert shown["state"] == "Protected" and shown["health"] == "Normal", shown
    assert shown["rpo_seconds"] is not None and shown["rpo_seconds"] < 60
    assert shown["replication_error"] is None


def test_a_restored_configuration_server_lets_failback_proceed(
    cycle_lab: Lab, tmp_path: Path
) -> None:
    """The source documents: back the configuration server up; after a loss,
    restore it with the same address, and failback works. Here it is replaced
    by a fresh one (empty state folder) mid-cycle, restored from the backup,
    and the failback proceeds and proves its disks. Then commit is refused
    while the proof does not hold, unless forced."""
    import sqlalchemy

    lab, vm = cycle_lab, "web-01"
    succeeded(lab, "reprotect", vm)  # back to the cloud after the kill test's failback
    succeeded(lab, "failover", vm)
    succeeded(lab, "commit", vm)
    succeeded(lab, "reprotect", vm)  # to on-premises again: Protected, recovery -> primary
    archive = tmp_path / "cs.backup"
    code, out = vmdr(lab, "server", "backup", str(archive), "--with-key")
    assert code == 0, out
    code, out = vmdr(lab, "server", "backup-key")
    assert code == 0, out
    key_file = tmp_path / "backup.key"  # kept apart from the archives
    key_file.write_text(out["key"])

    lab.restart("configuration-server", kill=True, fresh=True)
    code, out = vmdr(lab, "items", "show", vm)
    assert code == 1 and out["error"]["code"] == "VMDR-E0543"  # a fresh server knows nothing
    code, out = vmdr(lab, "server", "restore", str(archive), "--backup-key", str(key_file))
    assert code == 0, out
    lab.write_dataplane()
    restored = item(lab, vm)
    assert (restored["state"], restored["direction"]) == ("Protected", "recoveryToPrimary")

    succeeded(lab, "failback", vm)
    back = item(lab, vm)
    assert back["active_site"] == "primary" and all(
        p["equal"] for p in back["failback_proof"].values()
    )

    # Commit refuses while the proof does not hold (here: made false in the database).
    state = lab.state()
    assert state is not None
    db = Path(state.service("configuration-server").details["state"]) / "vmdr.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        row = conn.execute(
            sqlalchemy.text("SELECT id, settings FROM protected_items WHERE id = :id"),
            {"id": back["id"]},
        ).one()
        settings = json.loads(row.settings)
        for proof in settings["failback_proof"].values():
            proof["equal"] = False
        conn.execute(
            sqlalchemy.text("UPDATE protected_items SET settings = :s WHERE id = :id"),
            {"s": json.dumps(settings), "id": back["id"]},
        )
    engine.dispose()
    code, job = vmdr(lab, "commit", vm)
    assert code == 1 and job["error"]["code"] == "VMDR-E0825", job
    assert item(lab, vm)["state"] == "FailedOver"  # nothing deleted
    succeeded(lab, "commit", vm, "--force")
    assert item(lab, vm)["state"] == "Committed"


def test_test_failover_resync_and_disable_protection(cycle_lab: Lab) -> None:
    """A test failover runs a test VM from copies on an isolated network and
    leaves the replica untouched; cleanup removes every test resource; resync
    and disable protection do what they say; protecting again sends only what
    differs."""
    lab, vm = cycle_lab, "web-01"
    succeeded(lab, "reprotect", vm)  # to the cloud, after the restore test's commit
    blobs = {d["unit"]: d["blob"] for d in item(lab, vm)["disks"]}
    before = {u: blob_sha(lab, b) for u, b in blobs.items()}

    succeeded(lab, "test-failover", vm)
    tested = item(lab, vm)
    assert tested["state"] == "TestFailoverCompleted"
    cloud = json.loads((lab.directory / "cloud-vms" / "cloud-vms.json").read_text())
    test_vm = cloud[f"{vm}-test"]
    assert test_vm["network"] == "vmdr-test-isolated"
    assert test_vm["disks"] == [f"{b}-test" for b in blobs.values()]
    assert vm not in cloud  # no production VM in the cloud
    time.sleep(2)  # the test VM writes to its own disks only
    assert {u: blob_sha(lab, b) for u, b in blobs.items()} == before

    succeeded(lab, "test-failover-cleanup", vm)
    cloud = json.loads((lab.directory / "cloud-vms" / "cloud-vms.json").read_text())
    assert f"{vm}-test" not in cloud
    for blob in blobs.values():
        assert not _blob(lab, f"{blob}-test", lambda b: b.exists())
    assert item(lab, vm)["state"] == "Protected"

    succeeded(lab, "resync", vm)
    _, points = vmdr(lab, "items", "points", vm)
    assert points[-1]["tag"] == "resync"

    succeeded(lab, "disable-protection", vm)
    assert item(lab, vm)["state"] == "Unprotected"
    succeeded(lab, "protect", vm)
    again = item(lab, vm)
    assert again["state"] == "Protected"
    assert sum(again["last_sync"]["bytes"].values()) == 0  # the cloud disks were kept


def test_failover_and_failback_move_the_dns_name(cycle_lab: Lab) -> None:
    """A traffic profile serves web-01: failover points its name at the cloud
    endpoint once that answers its probe, failback points it home again."""
    from tests.functional.routing.test_dns_and_probes import resolve

    lab, vm = cycle_lab, "web-01"
    with app_servers("127.0.0.2", "127.0.0.3") as servers:
        try:
            code, _ = vmdr(lab, "traffic", "create", "web", "--dns-name", "www", "--item", vm)
            assert code == 0
            add_site_endpoints(lab, "web", servers)
            dns_server = wait_resolves(lab, "www", ["127.0.0.2"])

            job = succeeded(lab, "failover", vm)
            assert ("cutover", "end") in [(e["step"], e["kind"]) for e in job["events"]]
            assert resolve(dns_server, "www") == ["127.0.0.3"]
            succeeded(lab, "commit", vm)
            succeeded(lab, "reprotect", vm)
            assert resolve(dns_server, "www") == ["127.0.0.3"]  # still served from the cloud
            succeeded(lab, "failback", vm)
            assert resolve(dns_server, "www") == ["127.0.0.2"]
            succeeded(lab, "commit", vm)
            code, shown = vmdr(lab, "traffic", "show", "web")
            moves = [e["message"] for e in shown["events"] if e["kind"] == "dns"]
            assert any("cutover to recovery" in m for m in moves)
            assert any("cutover to primary" in m for m in moves)
        finally:
            vmdr(lab, "traffic", "delete", "web")  # its servers go away with this test


def test_failback_to_an_earlier_recovery_point(cycle_lab: Lab) -> None:
    """While web-01 runs in the cloud a point is taken ("good"); the workload
    then keeps writing (say, the data got damaged). Failback to "good" brings
    exactly that state home, proved, and keeps the later state as a point."""
    lab, vm = cycle_lab, "web-01"
    succeeded(lab, "reprotect", vm)  # to the cloud, after the DNS test's commit
    succeeded(lab, "failover", vm)
    succeeded(lab, "commit", vm)
    succeeded(lab, "reprotect", vm)  # home again: the cloud VM runs and writes
    blobs = {d["unit"]: d["blob"] for d in item(lab, vm)["disks"]}
    succeeded(lab, "items", "point", vm, "--tag", "good")
    _, points = vmdr(lab, "items", "points", vm)
    good = points[-1]
    assert good["tag"] == "good"
    good_sha = {u: snapshot_sha(lab, good["disks"][str(u)]) for u in blobs}
    at_good = {u: blob_etag(lab, b) for u, b in blobs.items()}
    deadline = time.monotonic() + 30
    while all(blob_etag(lab, b) == at_good[u] for u, b in blobs.items()):
        assert time.monotonic() < deadline, "the cloud workload wrote nothing after the point"
        time.sleep(0.5)

    succeeded(lab, "failback", vm, "--recovery-point", str(good["seq"]))
    back = item(lab, vm)
    assert back["active_site"] == "primary" and all(
        p["equal"] for p in back["failback_proof"].values()
    )
    built = next(v for v in load_inventory(lab.directory)["vms"] if v["name"] == vm)
    for disk in built["disks"]:
        assert file_sha(Path(disk["flat_path"])) == good_sha[disk["unit"]]
    _, points = vmdr(lab, "items", "points", vm)
    assert f"before-failback-to-{good['seq']}" in [p["tag"] for p in points]  # nothing lost
    succeeded(lab, "commit", vm)


def test_a_failback_drill_leaves_production_untouched(cycle_lab: Lab) -> None:
    """Test failover in the recovery -> primary direction: a scratch VM on the
    master target's host gets the disks as at the master target's latest
    point; the real on-premises disks and the running cloud VM are untouched;
    cleanup removes the scratch VM and its files."""
    from vmdr.providers.vsphere.control import VmNotFound, find_vm
    from vmdr.providers.vsphere.control import power_state as state_of
    from vmdr.providers.vsphere.session import session

    lab, vm = cycle_lab, "web-01"
    succeeded(lab, "reprotect", vm)  # to the cloud, after the earlier-point test's commit
    succeeded(lab, "failover", vm)
    succeeded(lab, "commit", vm)
    succeeded(lab, "reprotect", vm)  # home: the process server replicates to the master target
    built = next(v for v in load_inventory(lab.directory)["vms"] if v["name"] == vm)
    flats = {d["unit"]: Path(d["flat_path"]) for d in built["disks"]}
    production = {u: file_sha(f) for u, f in flats.items()}

    succeeded(lab, "test-failover", vm)
    drilled = item(lab, vm)
    assert drilled["state"] == "TestFailoverCompleted"
    drill = drilled["test_failover"]["vm"]
    assert drill == f"{vm}-drill"
    roots = {d["name"]: Path(d["path"])
             for d in load_inventory(lab.directory)["topology"]["datastores"]}  # fmt: skip
    with session(vcenter_endpoint(lab.directory)) as si:
        assert state_of(si, find_vm(si, drill)) == "poweredOn"
    for unit, flat in flats.items():
        suffix = "" if unit == 0 else f"_{unit}"
        copy = roots["vmfs-01"] / drill / f"{drill}{suffix}-flat.vmdk"
        assert file_sha(copy) == production[unit]  # the replica as at the latest point
        assert file_sha(flat) == production[unit]  # production untouched
    cloud = json.loads((lab.directory / "cloud-vms" / "cloud-vms.json").read_text())
    assert cloud[vm]["state"] == "running"  # the cloud VM keeps running
    # The master target wrote the scratch disks attached to its VM; they were
    # detached before the scratch VM started; the replication's stay.
    assert sorted(master_target_disks(lab)) == [f"[vmfs-01] {vm}/{vm}.vmdk",
                                               f"[vmfs-01] {vm}/{vm}_1.vmdk"]  # fmt: skip

    succeeded(lab, "test-failover-cleanup", vm)
    with session(vcenter_endpoint(lab.directory)) as si, pytest.raises(VmNotFound):
        find_vm(si, drill)
    assert not (roots["vmfs-01"] / drill).exists()
    assert item(lab, vm)["state"] == "Protected"
    succeeded(lab, "failback", vm)
    succeeded(lab, "commit", vm)
