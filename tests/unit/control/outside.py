"""The outside world of the workflow steps, in memory: a cloud compute and a
process server that keep what they were asked in a dict, behind the same
interfaces the real ones have (``CloudCompute``; the typed process-server
client), and a data plane that hands them out. What the memory backend is
to the block engine, for unit tests of steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import PrivateAttr

from vmdr.control.dataplane import DataPlane
from vmdr.providers.azure.compute import RUNNING, STOPPED, CloudCompute, CloudVm
from vmdr.providers.azure.errors import CloudVmExists, CloudVmNotFound
from vmdr.roles.contracts import NewReplication, PointRequest, ReplicationStatus
from vmdr.transport.client import RemoteError


class MemoryCompute(CloudCompute):
    where = "memory"

    def __init__(self) -> None:
        self.vms: dict[str, CloudVm] = {}
        self.calls: list[tuple[str, str]] = []
        # What each VM wrote to each disk, as a test sets it; absent: unknown.
        self.written: dict[tuple[str, int], list[tuple[int, int]]] = {}

    def create_from_disks(
        self, name: str, disk_urls: Sequence[str], size: str, network: str
    ) -> CloudVm:
        self.calls.append(("create", name))
        if name in self.vms:
            raise CloudVmExists(name=name, where=self.where)
        self.vms[name] = CloudVm(name, tuple(disk_urls), size, network, STOPPED)
        return self.vms[name]

    def _set(self, name: str, state: str) -> CloudVm:
        vm = self.status(name)
        self.vms[name] = CloudVm(vm.name, vm.disks, vm.size, vm.network, state)
        return self.vms[name]

    def start(self, name: str) -> CloudVm:
        self.calls.append(("start", name))
        return self._set(name, RUNNING)

    def stop(self, name: str) -> CloudVm:
        self.calls.append(("stop", name))
        return self._set(name, STOPPED)

    def delete(self, name: str) -> None:
        self.calls.append(("delete", name))
        self.vms.pop(name, None)

    def status(self, name: str) -> CloudVm:
        if name not in self.vms:
            raise CloudVmNotFound(name=name, where=self.where)
        return self.vms[name]

    def written_extents(
        self, name: str, disk_index: int, url: str, size: int
    ) -> list[tuple[int, int]] | None:
        return self.written.get((name, disk_index))  # None: cannot tell


class MemoryProcessServer:
    """The process server's API as the typed client offers it."""

    def __init__(self) -> None:
        self.specs: dict[str, NewReplication] = {}
        self.status: dict[str, dict[str, Any]] = {}
        self.dirty: dict[str, list[tuple[int, int]]] = {}
        self.points: list[tuple[str, PointRequest]] = []
        self.stopped: list[tuple[str, bool]] = []
        self.sync_at_once = False  # a started replication's initial sync is done at once

    def __enter__(self) -> MemoryProcessServer:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def start(self, spec: NewReplication) -> dict[str, Any]:
        if spec.id in self.specs:
            raise RemoteError(service="ps", status=409, detail="exists", remote_code="VMDR-E0432")
        self.specs[spec.id] = spec
        self.status[spec.id] = {"id": spec.id, "phase": "initial",
                                "initial_done": self.sync_at_once, "sent_bytes": 0}  # fmt: skip
        return {"id": spec.id}

    def replications(self) -> list[ReplicationStatus]:
        return [ReplicationStatus.model_validate(s) for s in self.status.values()]

    def replication(self, rid: object) -> ReplicationStatus:
        return ReplicationStatus.model_validate(self.status[str(rid)])

    def mark_dirty(self, rid: object, extents: list[tuple[int, int]]) -> None:
        self.dirty.setdefault(str(rid), []).extend(extents)

    def point(self, rid: object, request: PointRequest) -> dict[str, Any]:
        self.points.append((str(rid), request))
        return {"delivered": True, "point": {"seq": len(self.points)}}

    def stop(self, rid: object, *, forget_target: bool = False) -> bool:
        self.stopped.append((str(rid), forget_target))
        self.specs.pop(str(rid), None)
        return self.status.pop(str(rid), None) is not None


class MemoryPlane(DataPlane):
    _compute: MemoryCompute = PrivateAttr(default_factory=MemoryCompute)
    _ps: MemoryProcessServer = PrivateAttr(default_factory=MemoryProcessServer)

    def compute(self) -> MemoryCompute:
        return self._compute

    def ps(self) -> Any:
        return self._ps


class MemoryVms:
    """A vCenter's VMs by name, as ``VmOperations`` offers them."""

    def __init__(self, *names: str) -> None:
        self.power: dict[str, str] = {name: "poweredOn" for name in names}
        self.created: dict[str, tuple[str, str, list[Any]]] = {}
        self.snapshots_removed: list[str] = []
        self.attached: dict[str, dict[str, str]] = {}  # VM -> its disks' files -> UUIDs
        self.cycle_snapshots: list[str] = []

    def __call__(self, vcenter_id: str) -> Any:  # Workflows.vcenters
        import contextlib

        return contextlib.nullcontext(self)

    def inventory(self) -> Any:
        raise AssertionError("discovery is the simulator's to test")

    def exists(self, name: str) -> bool:
        return name in self.power

    def _need(self, name: str) -> None:
        from vmdr.providers.vsphere.control import VmNotFound

        if name not in self.power:
            raise VmNotFound(name=name)

    def power_on(self, name: str) -> None:
        self._need(name)
        self.power[name] = "poweredOn"

    def power_off(self, name: str, guest_timeout: float) -> str:
        self._need(name)
        was, self.power[name] = self.power[name], "poweredOff"
        return "already" if was == "poweredOff" else "guest"

    def remove_snapshots(self, name: str) -> int:
        self._need(name)
        self.snapshots_removed.append(name)
        return 1

    def create(self, name: str, host: str, datastore: str, disks: list[Any]) -> None:
        self.power[name] = "poweredOff"
        self.created[name] = (host, datastore, disks)

    def delete(self, name: str) -> None:
        self._need(name)
        del self.power[name]

    def attach(self, name: str, files: list[str]) -> dict[str, str]:
        import uuid

        self._need(name)
        disks = self.attached.setdefault(name, {})
        for file in files:
            disks.setdefault(file, str(uuid.uuid5(uuid.NAMESPACE_URL, file)))
        return {f: disks[f] for f in files}

    def detach(self, name: str, files: list[str]) -> list[str]:
        self._need(name)
        disks = self.attached.get(name, {})
        return [f for f in files if disks.pop(f, None) is not None]

    def cycle_snapshot(self, name: str, cycle: str, quiesce: bool, since: dict[str, str]) -> Any:
        """No tracking here: every disk is compared whole."""
        from vmdr.providers.vsphere.cbt import CycleSnapshot

        self._need(name)
        self.cycle_snapshots.append(name)
        return CycleSnapshot("crash", {}, dict.fromkeys(since), [])

    def remove_cycle_snapshots(self, name: str) -> int:
        self._need(name)
        return int(name in self.cycle_snapshots)
