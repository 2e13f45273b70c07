"""The master target writes disks attached to its VM, found by VMDK UUID
under its by-id folder (as a Linux guest with disk.enableUUID=TRUE sees
them), never a file it creates: real processes, loopback TLS, real files
standing in for the devices the links lead to."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from vmdr.lab.pair import Pair
from vmdr.providers.vsphere.control import vmware_disk_uuid
from vmdr.transport.client import RemoteError

from ..blocks.helpers import random_image, same_bytes

MiB = 1 << 20


def blank_device(path: Path, size: int) -> Path:
    """A VMDK's extent as ESX created it: the disk's full size, all zero."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def replicate_into(pair: Pair, source: Path, device: Path) -> str:
    """Attach ``device`` to the master target's VM and replicate ``source``
    into it (replication r1) until the initial copy is done; its UUID."""
    disk_uuid = vmware_disk_uuid()
    pair.attach(device, disk_uuid)
    with pair.ps_client() as c:
        c.post("/v1/replications", pair.device_replication("r1", str(source), disk_uuid))
    pair.wait("r1", lambda s: bool(s.get("initial_done")))
    return disk_uuid


def test_a_replication_writes_the_attached_disk_it_names(pair: Pair, tmp_path: Path) -> None:
    source = random_image(tmp_path / "src.img", 24 * MiB, seed=31)
    device = blank_device(tmp_path / "web-01-flat.vmdk", 24 * MiB)
    disk_uuid = replicate_into(pair, source, device)
    assert same_bytes(source, device)
    assert list(pair.ds.iterdir()) == []  # nothing created in a datastore folder
    with pair.mt_client() as c:
        shown = c.get("/v1/disks/r1")
    assert shown["device"] == disk_uuid.lower()
    assert shown["size"] == 24 * MiB and "path" not in shown


def test_a_disk_that_never_appears_is_refused_with_its_code(pair: Pair) -> None:
    disk_uuid = vmware_disk_uuid()
    started = time.monotonic()
    with pair.mt_client() as c, pytest.raises(RemoteError) as err:
        c.put("/v1/disks/d1", pair.device_disk("d1", disk_uuid, size=MiB))
    assert (err.value.status, err.value.remote_code) == (409, "VMDR-E0426")
    assert time.monotonic() - started >= 2  # it waited --device-wait for udev
    assert disk_uuid.lower() in str(err.value)
    assert list(pair.ds.iterdir()) == []


def test_a_uuid_naming_two_devices_is_refused(pair: Pair, tmp_path: Path) -> None:
    disk_uuid = vmware_disk_uuid()
    one = blank_device(tmp_path / "one-flat.vmdk", MiB)
    two = blank_device(tmp_path / "two-flat.vmdk", MiB)
    pair.attach(one, disk_uuid)
    hex_ = disk_uuid.replace("-", "").lower()
    (pair.by_id / f"scsi-SVMware_Virtual_disk_{hex_}").symlink_to(two)  # a copied VMDK
    with pair.mt_client() as c, pytest.raises(RemoteError) as err:
        c.put("/v1/disks/d1", pair.device_disk("d1", disk_uuid, size=MiB))
    assert (err.value.status, err.value.remote_code) == (409, "VMDR-E0427")
    assert one.read_bytes() == two.read_bytes() == bytes(MiB)


def test_a_device_smaller_than_the_source_is_refused_not_grown(pair: Pair, tmp_path: Path) -> None:
    disk_uuid = vmware_disk_uuid()
    device = blank_device(tmp_path / "small-flat.vmdk", MiB)
    pair.attach(device, disk_uuid)
    with pair.mt_client() as c, pytest.raises(RemoteError) as err:
        c.put("/v1/disks/d1", pair.device_disk("d1", disk_uuid, size=2 * MiB))
    assert (err.value.status, err.value.remote_code) == (409, "VMDR-E0428")
    assert device.stat().st_size == MiB


def test_a_grant_for_one_attached_disk_does_not_open_another(pair: Pair, tmp_path: Path) -> None:
    granted, other = vmware_disk_uuid(), vmware_disk_uuid()
    device = blank_device(tmp_path / "other-flat.vmdk", MiB)
    pair.attach(device, other)
    body = {**pair.device_disk("d1", granted, size=MiB), "device": other}
    with pair.mt_client() as c, pytest.raises(RemoteError) as err:
        c.put("/v1/disks/d1", body)
    assert (err.value.status, err.value.remote_code) == (403, "VMDR-E0360")
    # Nor does a grant for a datastore file open a device, or the reverse.
    path_grant = pair.disk("d1", "d1/d1-flat.vmdk", size=MiB)["grant"]
    with pair.mt_client() as c, pytest.raises(RemoteError) as err:
        c.put("/v1/disks/d1", {"device": other, "size": MiB, "grant": path_grant})
    assert err.value.remote_code == "VMDR-E0360"


def test_the_disk_is_found_again_after_a_detach_and_attach(pair: Pair, tmp_path: Path) -> None:
    """A re-attached disk may be another device (sdc, not sdb): the master
    target looks its UUID up each time it opens it."""
    source = random_image(tmp_path / "src.img", 8 * MiB, seed=32)
    first = blank_device(tmp_path / "first-flat.vmdk", 8 * MiB)
    disk_uuid = replicate_into(pair, source, first)
    # Detach, and the same VMDK comes back under another device name.
    for link in pair.by_id.iterdir():
        link.unlink()
    moved = tmp_path / "moved-flat.vmdk"
    os.rename(first, moved)
    pair.attach(moved, disk_uuid)
    with open(source, "r+b") as f:
        f.seek(MiB)
        f.write(b"\x5a" * 4096)
    with pair.ps_client() as c:
        c.post("/v1/replications/r1/dirty", {"extents": [[MiB, 4096]]})
        answer = c.post("/v1/replications/r1/points", {"tag": "after", "wait": 60})
    assert answer.get("delivered")
    assert same_bytes(source, moved)


def test_a_point_is_materialised_into_another_attached_disk_never_the_replica(
    pair: Pair, tmp_path: Path
) -> None:
    """The failback drill: the scratch VM's disk, attached to the master
    target, gets the replica as at its latest point."""
    source = random_image(tmp_path / "src.img", 8 * MiB, seed=33)
    replica = replicate_into(pair, source, blank_device(tmp_path / "replica-flat.vmdk", 8 * MiB))
    scratch = vmware_disk_uuid()
    scratch_file = blank_device(tmp_path / "scratch-flat.vmdk", 8 * MiB)
    pair.attach(scratch_file, scratch)
    with pair.mt_client() as c, pytest.raises(RemoteError) as err:
        c.post("/v1/disks/r1/materialise", pair.device_materialise("r1", "latest", replica))
    assert (err.value.status, err.value.remote_code) == (409, "VMDR-E0424")
    with pair.mt_client() as c:
        done = c.post("/v1/disks/r1/materialise", pair.device_materialise("r1", "latest", scratch))
    assert done["device"] == scratch.lower()
    assert same_bytes(source, scratch_file)


def proven(pair: Pair, repl: str = "r1") -> dict[str, Any]:
    """Start a proof on the process server and wait for its verdict."""
    with pair.ps_client() as c:
        status = c.post(f"/v1/replications/{repl}/proof")
        deadline = time.monotonic() + 60
        while status["state"] == "running":
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
            status = c.get(f"/v1/replications/{repl}/proof")
    assert status["state"] == "done", status
    return dict(status["result"])


def test_the_proof_compares_the_source_with_the_attached_disk_where_they_are(
    pair: Pair, tmp_path: Path
) -> None:
    """The failback proof: the process server hashes the source, the master
    target its attached disk; one changed byte on either side is found."""
    source = random_image(tmp_path / "src.img", 8 * MiB, seed=34)
    device = blank_device(tmp_path / "web-01-flat.vmdk", 8 * MiB)
    replicate_into(pair, source, device)
    same = proven(pair)
    assert same["equal"] and same["source_root"] == same["target_root"]
    assert same["differing_bytes"] == 0 and same["target_size"] == 8 * MiB
    with open(device, "r+b") as f:  # a write nobody replicated
        f.seek(5 * MiB + 7)
        f.write(b"\xff")
    differ = proven(pair)
    assert not differ["equal"] and differ["differing_bytes"] == 64 << 10
    assert [(d["start"], d["length"]) for d in differ["differences"]] == [(5 * MiB, 64 << 10)]
    assert differ["source_root"] == same["source_root"] != differ["target_root"]


def test_a_proof_of_an_unknown_replication_is_refused(pair: Pair) -> None:
    with pair.ps_client() as c, pytest.raises(RemoteError) as err:
        c.get("/v1/replications/nope/proof")
    assert (err.value.status, err.value.remote_code) == (404, "VMDR-E0433")


def test_a_master_target_killed_mid_copy_finds_its_attached_disk_again(
    pair_factory: Any, tmp_path: Path
) -> None:
    """kill -9 between attach and detach: the restarted master target keeps
    the disk by its UUID (no path), and the copy ends byte for byte."""
    pair = pair_factory(ps_args=["--bandwidth", "12M"])
    source = random_image(tmp_path / "src.img", 48 * MiB, seed=35, data_fraction=0.9)
    device = blank_device(tmp_path / "web-01-flat.vmdk", 48 * MiB)
    disk_uuid = vmware_disk_uuid()
    pair.attach(device, disk_uuid)
    with pair.ps_client() as c:
        c.post("/v1/replications", pair.device_replication("r1", str(source), disk_uuid))
    time.sleep(2.0)  # about 24 MiB are through at 12 MiB/s
    pair.mt.kill9()
    time.sleep(1.0)
    pair.mt.start()
    with pair.mt_client() as c:
        assert c.get("/v1/disks/r1")["device"] == disk_uuid.lower()
    status = pair.wait("r1", lambda s: bool(s.get("initial_done")), timeout=90)
    assert same_bytes(source, device)
    assert status["resumed_from"] > 0, status
