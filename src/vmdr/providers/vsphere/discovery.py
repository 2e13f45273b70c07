"""Discovery: what a vCenter (or a standalone ESX host) holds, as plain data.

Read through the PropertyCollector (see ``session``): hosts with their
cluster, datastores with their type and the hosts that mount them, VMs with
their host, guest, power state, ``disk.enableUUID``, snapshot count and
disks (unit, UUID, capacity, file, datastore). The configuration server stores
the result; prechecks read it (which datastores the master target's host
reaches, whether a VM has snapshots, whether disks can be matched by UUID).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from vmdr.providers.vsphere.session import objects_of_type, retrieve

__all__ = ["DiscoveredDisk", "DiscoveredVm", "Inventory", "discover"]


@dataclass
class DiscoveredDisk:
    unit: int
    uuid: str | None
    capacity: int
    file: str  # "[datastore] folder/disk.vmdk"
    datastore: str | None


@dataclass
class DiscoveredVm:
    name: str
    moref: str
    host: str | None
    guest_id: str | None
    power_state: str | None
    enable_uuid: bool | None
    snapshots: int
    disks: list[DiscoveredDisk] = field(default_factory=list)


@dataclass
class Inventory:
    hosts: list[dict[str, Any]] = field(default_factory=list)
    datastores: list[dict[str, Any]] = field(default_factory=list)
    vms: list[DiscoveredVm] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _count_snapshots(tree: Any) -> int:
    return sum(1 + _count_snapshots(node.childSnapshotList) for node in tree or [])


def _enable_uuid(extra: Any) -> bool | None:
    values = [o.value for o in extra or [] if o.key == "disk.enableUUID"]
    if not values:
        return None
    return str(values[-1]).strip().upper() == "TRUE"


def discover(si: Any) -> Inventory:
    from pyVmomi import vim

    inv = Inventory()
    for host in objects_of_type(si, vim.HostSystem):
        p = retrieve(si, host, ["name", "parent"])
        parent = p.get("parent")
        cluster = None
        if isinstance(parent, vim.ClusterComputeResource):
            cluster = retrieve(si, parent, ["name"]).get("name")
        inv.hosts.append({"name": p.get("name"), "moref": host._moId, "cluster": cluster})
    for ds in objects_of_type(si, vim.Datastore):
        p = retrieve(si, ds, ["name", "summary.type", "host"])
        mounts = [retrieve(si, m.key, ["name"]).get("name") for m in p.get("host", [])]
        inv.datastores.append(
            {"name": p.get("name"), "moref": ds._moId, "type": p.get("summary.type"),
             "hosts": sorted(h for h in mounts if h)}
        )  # fmt: skip
    for vm in objects_of_type(si, vim.VirtualMachine):
        p = retrieve(
            si, vm,
            ["name", "runtime.host", "config.guestId", "runtime.powerState",
             "config.extraConfig", "snapshot", "config.hardware.device"],
        )  # fmt: skip
        host = p.get("runtime.host")
        snap = p.get("snapshot")
        found = DiscoveredVm(
            name=p.get("name", ""),
            moref=vm._moId,
            host=retrieve(si, host, ["name"]).get("name") if host is not None else None,
            guest_id=p.get("config.guestId"),
            power_state=str(p["runtime.powerState"]) if "runtime.powerState" in p else None,
            enable_uuid=_enable_uuid(p.get("config.extraConfig")),
            snapshots=_count_snapshots(snap.rootSnapshotList) if snap is not None else 0,
        )
        units = 0
        for dev in p.get("config.hardware.device", []):
            if not isinstance(dev, vim.vm.device.VirtualDisk):
                continue
            backing = dev.backing
            file = getattr(backing, "fileName", "") or ""
            datastore = file[1:].split("]", 1)[0] if file.startswith("[") else None
            found.disks.append(
                DiscoveredDisk(
                    unit=units,
                    uuid=getattr(backing, "uuid", None) or None,
                    capacity=int(dev.capacityInBytes or dev.capacityInKB * 1024),
                    file=file,
                    datastore=datastore,
                )
            )
            units += 1
        inv.vms.append(found)
    inv.vms.sort(key=lambda v: v.name)
    return inv
