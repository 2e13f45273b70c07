"""The lab's cloud VMs: records, a synthetic workload in its own process
writing to Azurite page blobs through TrackedBackend, and the dirty map it
leaves behind compared with the blobs' bytes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vmdr.blocks import DirtyCopy, DiskNotFound, open_backend
from vmdr.lab import process
from vmdr.providers.azure import fencing, pageblob
from vmdr.providers.azure.compute import RUNNING, STOPPED, CloudCompute
from vmdr.providers.azure.errors import CloudVmExists, CloudVmNotFound
from vmdr.providers.azure.lab_compute import LabCompute, WorkloadSpec
from vmdr.providers.azure.tracking import DirtyMap

MiB = 1 << 20
BS = 64 << 10
URL = Callable[[], str]


def _read_all(url: str) -> bytes:
    with open_backend(url) as disk:
        buf = bytearray(disk.size())
        disk.readinto(0, buf)
        return bytes(buf)


def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_create_start_workload_stop_delete(blob_url: URL, tmp_path: Path) -> None:
    sizes = (8 * MiB, 4 * MiB)
    urls = [blob_url() for _ in sizes]
    for url, size in zip(urls, sizes, strict=True):
        with pageblob.open_pageblob(url, "rw", create=True, size=size) as disk:
            disk.write(0, os.urandom(size // 2))  # an installed OS, say
    # On-prem is the writer of the OS disk until the failover takes it over.
    fencing.acquire(urls[0], "onprem:mt-01")
    lease, previous = fencing.take_over(urls[0], "cloud:web-01")
    assert previous == "onprem:mt-01"
    disks = [lease.url, urls[1]]
    before = [_read_all(u) for u in urls]

    spec = WorkloadSpec(seed=5, rate=400.0, max_ops=400, max_seconds=60, max_write=128 << 10)
    lab = LabCompute(tmp_path / "cloud", spec)
    cloud: CloudCompute = lab  # what a failover workflow sees
    vm = cloud.create_from_disks("web-01", disks, "Standard_D2s_v5", "lab-subnet")
    assert vm.state == STOPPED and vm.disks == tuple(disks)
    with pytest.raises(CloudVmExists):
        cloud.create_from_disks("web-01", disks, "Standard_D2s_v5", "lab-subnet")
    with pytest.raises(DiskNotFound):
        cloud.create_from_disks("db-01", [blob_url()], "Standard_D2s_v5", "lab-subnet")

    vm = cloud.start("web-01")
    assert vm.state == RUNNING
    pid = vm.details["pid"]
    assert cloud.start("web-01").details["pid"] == pid  # idempotent
    _wait_for(lambda: lab.workload_status("web-01").get("ops", 0) >= 40)
    vm = cloud.stop("web-01")
    assert vm.state == STOPPED
    assert process.start_time_of(pid) is None  # the workload's process is gone
    done = lab.workload_status("web-01")
    assert done["state"] == "stopped" and 40 <= done["ops"] < spec.max_ops
    assert cloud.stop("web-01").state == STOPPED  # idempotent

    # The blobs changed where the dirty maps say, and only there.
    for i, url in enumerate(urls):
        after = _read_all(url)
        with DirtyMap(lab.dirty_map_path("web-01", i), url=url, size=sizes[i]) as dm:
            dirty = dm.dirty()
        dirty_blocks = np.zeros(sizes[i] // BS, dtype=bool)
        for ext in dirty:
            dirty_blocks[ext.start // BS : ext.end // BS] = True
        a = np.frombuffer(before[i], dtype=np.uint8).reshape(-1, BS)
        b = np.frombuffer(after, dtype=np.uint8).reshape(-1, BS)
        changed = (a != b).any(axis=1)
        assert changed.any(), f"disk {i}: the workload changed nothing"
        assert not (changed & ~dirty_blocks).any(), f"disk {i}: a change outside the dirty map"
        # Random data: every block the map names did change, unless only zeroed
        # where it was zero already (a discard in the empty half).
        assert changed.sum() >= 0.5 * dirty_blocks.sum()

    # A failback copies exactly that: the stale on-prem copy becomes equal.
    stale = tmp_path / "onprem-disk0.raw"
    stale.write_bytes(before[0])
    with DirtyMap(lab.dirty_map_path("web-01", 0), url=urls[0], size=sizes[0]) as dm:
        with open_backend(urls[0]) as src, open_backend(str(stale), "rw") as dst:
            DirtyCopy(src, dst, dm.take()).run()
        dm.commit()
    assert stale.read_bytes() == _read_all(urls[0])

    cloud.delete("web-01")
    with pytest.raises(CloudVmNotFound):
        cloud.status("web-01")
    cloud.delete("web-01")  # idempotent
    assert all(pageblob.exists(u) for u in urls)  # the disks are not the VM's to delete
    fencing.release(lease)


def test_a_bounded_workload_ends_by_itself(blob_url: URL, tmp_path: Path) -> None:
    url = blob_url()
    pageblob.create(url, 2 * MiB)
    lab = LabCompute(tmp_path / "cloud", WorkloadSpec(seed=2, rate=0, max_ops=25))
    lab.create_from_disks("app-01", [url], "Standard_B1s", "lab-subnet")
    lab.start("app-01")
    _wait_for(lambda: lab.status("app-01").state == STOPPED)
    status = lab.workload_status("app-01")
    assert status["ops"] == 25 and status["state"] == "stopped"
    assert lab.status("app-01").details["workload"]["ops"] == 25
    lab.delete("app-01")
    assert not (tmp_path / "cloud" / "dirty" / "app-01").exists()
