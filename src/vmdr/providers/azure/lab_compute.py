"""Cloud VMs in the lab: ``CloudCompute`` without a cloud.

No Azure compute emulator exists, so the lab models a cloud VM as a record
in ``<folder>/cloud-vms.json`` and, while it runs, a *synthetic workload*: a
child process (``python -m vmdr.providers.azure.lab_compute run ...``) that
writes to the VM's disks, the replica page blobs in Azurite, the way a guest
would: random writes of 4-256 KiB, some in a hot region, a few discards
(``zero``). It writes through ``TrackedBackend``, so every VM disk gets a real
vmdr dirty map at ``<folder>/dirty/<vm>/disk<i>.map``: what a failback's
``DirtyCopy`` needs, and what the tests compare with the blob's bytes.

The workload is bounded (``WorkloadSpec``: operations, bytes, seconds, rate)
and stoppable: ``stop`` sends SIGTERM, the workload finishes its current
write, flushes every disk, closes the dirty maps and exits. Its counters are
in ``<folder>/vms/<vm>.status.json``. A child process, not a thread, so the
VM keeps running after the command that started it exits, and another
process (a later job) can stop it, as with a real cloud VM. Disk URLs may
carry a lease (``?lease=``): the workload then writes under that lease and is
fenced like any writer.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vmdr.blocks.durable import write_atomically
from vmdr.blocks.urls import open_backend
from vmdr.lab import process
from vmdr.lab.process import ProcessRecord
from vmdr.providers.azure.compute import RUNNING, STOPPED, CloudCompute, CloudVm
from vmdr.providers.azure.errors import CloudVmExists, CloudVmNotFound, CloudVmState
from vmdr.providers.azure.tracking import DirtyMap, TrackedBackend, open_tracked

log = logging.getLogger(__name__)

__all__ = ["STATE_FILE", "LabCompute", "WorkloadSpec", "run_workload"]

STATE_FILE = "cloud-vms.json"
ALIGN = 4096
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class WorkloadSpec:
    """What a running lab VM does to its disks. Every bound applies; the
    workload ends at the first one reached (or at ``stop``)."""

    seed: int = 1
    rate: float = 20.0  # operations per second, all disks together
    max_ops: int = 10_000
    max_bytes: int = 256 << 20
    max_seconds: float = 3600.0
    min_write: int = 4 << 10
    max_write: int = 256 << 10
    hot_fraction: float = 0.1  # the hot region: this share of each disk...
    hot_share: float = 0.7  # ...gets this share of the writes
    zero_share: float = 0.05  # discards among the operations
    flush_every: int = 16


class LabCompute(CloudCompute):
    def __init__(self, folder: str | os.PathLike[str], workload: WorkloadSpec | None = None):
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.workload = workload or WorkloadSpec()

    @property
    def where(self) -> str:
        return f"the lab's cloud ({self.folder / STATE_FILE})"

    # -- CloudCompute -----------------------------------------------------------------
    def create_from_disks(
        self, name: str, disk_urls: Sequence[str], size: str, network: str
    ) -> CloudVm:
        if not disk_urls:
            raise ValueError("a VM needs at least one disk (the OS disk)")
        sizes = []
        for url in disk_urls:  # the disks must exist: DiskNotFound otherwise
            with open_backend(url) as disk:
                sizes.append(disk.size())
        with self._records() as records:
            if name in records:
                raise CloudVmExists(name=name, where=self.where)
            records[name] = {
                "name": name,
                "disks": list(disk_urls),
                "disk_sizes": sizes,
                "size": size,
                "network": network,
                "state": STOPPED,
                "created": time.time(),
                "process": None,
                "workload": asdict(self.workload),
                "dirty_maps": [str(self.dirty_map_path(name, i)) for i in range(len(disk_urls))],
            }
            return self._vm(records[name])

    def start(self, name: str) -> CloudVm:
        with self._records() as records:
            record = self._get(records, name)
            if record["state"] == RUNNING and self._alive(record):
                return self._vm(record)
            status_file = self.status_path(name)
            status_file.unlink(missing_ok=True)
            argv = [
                sys.executable, "-m", "vmdr.providers.azure.lab_compute", "run",
                "--folder", str(self.folder), "--vm", name,
            ]  # fmt: skip
            proc = process.spawn(argv, self.folder / "logs" / f"{name}.log")
            record["process"] = proc.to_dict()
            record["state"] = RUNNING
        # Outside the lock: the workload reads the records file to start.
        why = process.wait_until(lambda: _ready(status_file), proc, START_TIMEOUT)
        if why is not None and not _ready(status_file):
            with self._records() as records:
                self._get(records, name)["state"] = STOPPED
            detail = f"its workload {why}; see {self.folder / 'logs' / f'{name}.log'}"
            raise CloudVmState(action="start", name=name, state="failing", hint=detail)
        return self.status(name)

    def stop_all(self) -> list[str]:
        """Stop every running VM at once (the lab going down): each workload
        finishes its write and flushes in parallel, not one after another."""
        with self._records() as records:
            running = {n: ProcessRecord.from_dict(r["process"])
                       for n, r in records.items() if r.get("process")}  # fmt: skip
            process.stop_all(list(running.values()), timeout=30.0)
            for name in running:
                records[name]["process"] = None
                records[name]["state"] = STOPPED
        return sorted(running)

    def stop(self, name: str) -> CloudVm:
        with self._records() as records:
            record = self._get(records, name)
            if record.get("process"):
                process.stop(ProcessRecord.from_dict(record["process"]), timeout=30.0)
            record["process"] = None
            record["state"] = STOPPED
            return self._vm(record)

    def delete(self, name: str) -> None:
        with self._records() as records:
            record = records.get(name)
            if record is None:
                return
            if record.get("process"):
                process.stop(ProcessRecord.from_dict(record["process"]), timeout=30.0)
            del records[name]
        shutil.rmtree(self.folder / "dirty" / name, ignore_errors=True)
        self.status_path(name).unlink(missing_ok=True)

    def status(self, name: str) -> CloudVm:
        with self._records() as records:
            record = self._get(records, name)
            if record["state"] == RUNNING and not self._alive(record):
                record["state"] = STOPPED  # the bounded workload ended by itself
                record["process"] = None
            return self._vm(record)

    def written_extents(
        self, name: str, disk_index: int, url: str, size: int
    ) -> list[tuple[int, int]] | None:
        """From the dirty map the lab VM's workload keeps of its writes (a
        VM that never ran wrote nothing)."""
        path = self.dirty_map_path(name, disk_index)
        if not path.exists():
            return []
        with DirtyMap(path, url=url, size=size) as dirty:
            return [(e.start, e.length) for e in dirty.dirty()]

    # -- lab specifics ----------------------------------------------------------------------
    def names(self) -> list[str]:
        with self._records() as records:
            return sorted(records)

    def dirty_map_path(self, name: str, disk_index: int) -> Path:
        return self.folder / "dirty" / name / f"disk{disk_index}.map"

    def status_path(self, name: str) -> Path:
        return self.folder / "vms" / f"{name}.status.json"

    def workload_status(self, name: str) -> dict[str, Any]:
        path = self.status_path(name)
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return data

    # -- records ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _records(self) -> Iterator[dict[str, dict[str, Any]]]:
        """The records, locked against other processes; saved on a clean exit."""
        path = self.folder / STATE_FILE
        with open(self.folder / (STATE_FILE + ".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records: dict[str, dict[str, Any]] = (
                json.loads(path.read_text()) if path.exists() else {}
            )
            yield records
            _write_json(path, records)

    def _get(self, records: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
        if name not in records:
            raise CloudVmNotFound(name=name, where=self.where)
        return records[name]

    @staticmethod
    def _alive(record: dict[str, Any]) -> bool:
        proc = record.get("process")
        return proc is not None and process.is_alive(ProcessRecord.from_dict(proc))

    def _vm(self, record: dict[str, Any]) -> CloudVm:
        details = {
            "dirty_maps": list(record["dirty_maps"]),
            "workload": self.workload_status(record["name"]),
        }
        if record.get("process"):
            details["pid"] = record["process"]["pid"]
        return CloudVm(
            name=record["name"],
            disks=tuple(record["disks"]),
            size=record["size"],
            network=record["network"],
            state=record["state"],
            details=details,
        )


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(data, indent=2).encode(), mode=0o644)


def _ready(status_file: Path) -> bool:
    try:
        return json.loads(status_file.read_text()).get("state") in ("running", "stopped")
    except (FileNotFoundError, json.JSONDecodeError):
        return False


# -- the workload (runs in the VM's own process) ---------------------------------------


def run_workload(folder: Path, name: str, stop: threading.Event | None = None) -> dict[str, Any]:
    """Write to the VM's disks until a bound or ``stop``; returns the counters."""
    records = json.loads((folder / STATE_FILE).read_text())
    record = records[name]
    spec = WorkloadSpec(**record["workload"])
    stop = stop or threading.Event()
    status_file = folder / "vms" / f"{name}.status.json"
    counters: dict[str, Any] = {"state": "starting", "ops": 0, "writes": 0, "zeroes": 0}
    counters.update(bytes_written=0, bytes_zeroed=0, pid=os.getpid())
    disks: list[TrackedBackend] = []
    try:
        for url, map_path in zip(record["disks"], record["dirty_maps"], strict=True):
            disks.append(open_tracked(url, map_path, "rw"))
        counters["state"] = "running"
        _write_json(status_file, counters)
        _drive(disks, spec, stop, counters, status_file)
    finally:
        counters["state"] = "stopping"
        try:
            for disk in disks:
                disk.flush()
        finally:
            for disk in disks:
                disk.close()
            counters["state"] = "stopped"
            _write_json(status_file, counters)
    return counters


def _drive(
    disks: list[TrackedBackend],
    spec: WorkloadSpec,
    stop: threading.Event,
    counters: dict[str, Any],
    status_file: Path,
) -> None:
    rng = np.random.default_rng(spec.seed)
    deadline = time.monotonic() + spec.max_seconds
    interval = 1.0 / spec.rate if spec.rate > 0 else 0.0
    sizes = [d.size() for d in disks]
    next_at = time.monotonic()
    while not stop.is_set() and counters["ops"] < spec.max_ops and time.monotonic() < deadline:
        if counters["bytes_written"] + counters["bytes_zeroed"] >= spec.max_bytes:
            break
        i = int(rng.integers(len(disks)))
        disk, size = disks[i], sizes[i]
        length = int(rng.integers(spec.min_write // ALIGN, spec.max_write // ALIGN + 1)) * ALIGN
        length = min(length, size // ALIGN * ALIGN)
        if length <= 0:
            break
        span = int(size * spec.hot_fraction) if rng.random() < spec.hot_share else size
        last = max(span - length, 0) // ALIGN
        offset = int(rng.integers(last + 1)) * ALIGN
        if rng.random() < spec.zero_share:
            disk.zero(offset, length)
            counters["zeroes"] += 1
            counters["bytes_zeroed"] += length
        else:
            disk.write(offset, rng.bytes(length))
            counters["writes"] += 1
            counters["bytes_written"] += length
        counters["ops"] += 1
        if counters["ops"] % spec.flush_every == 0:
            for d in disks:
                d.flush()
            _write_json(status_file, counters)
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            stop.wait(delay)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vmdr.providers.azure.lab_compute")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a lab VM's synthetic workload (used by LabCompute)")
    run.add_argument("--folder", type=Path, required=True)
    run.add_argument("--vm", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    counters = run_workload(args.folder, args.vm, stop)
    log.info("workload vm=%s ended counters=%s", args.vm, counters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
