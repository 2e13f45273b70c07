"""Discovery: what a vCenter (or a standalone ESX host) holds, as plain data.

Read through the PropertyCollector (see ``session``): datacenters, clusters,
hosts, datastores with their type and the hosts that mount them, VMs with
their host, guest, power state, ``disk.enableUUID``, snapshot count, the
datastores they live on, and disks (controller address, UUID, capacity, file,
datastore, backing kind). The configuration server stores the result;
prechecks read it (which datastores the master target's host reaches, whether
a VM has snapshots, whether disks can be matched by UUID, whether a disk is an
RDM).

The simulator cannot hold RDM disks (adding one panics it, see
docs/emulators.md), so the backing classification is unit-tested on pyVmomi
objects built in memory (tests/unit/providers/test_discovery_shapes.py) and
the lab has no RDM disk.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from vmdr.providers.vsphere.session import objects_of_type, retrieve

__all__ = [
    "DiscoveredDisk",
    "DiscoveredVm",
    "Inventory",
    "classify_backing",
    "controller_name",
    "discover",
    "disks_of",
]


@dataclass
class DiscoveredDisk:
    unit: int  # position among the VM's disks, in device order
    uuid: str | None
    capacity: int
    file: str  # "[datastore] folder/disk.vmdk"
    datastore: str | None
    address: str | None = None  # controller bus and unit, e.g. "scsi0:1"
    controller: str | None = None  # pvscsi, lsilogic, lsilogic-sas, buslogic, sata, ide, nvme
    backing: str = "flat"  # flat | sparse | sesparse | rdm-physical | rdm-virtual | other


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
    guest_full_name: str | None = None
    annotation: str | None = None
    datastores: list[str] = field(default_factory=list)


@dataclass
class Inventory:
    api_type: str = "VirtualCenter"  # or "HostAgent": an ESX host answering directly
    datacenters: list[str] = field(default_factory=list)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    hosts: list[dict[str, Any]] = field(default_factory=list)
    datastores: list[dict[str, Any]] = field(default_factory=list)
    vms: list[DiscoveredVm] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _count_snapshots(tree: Any) -> int:
    return sum(1 + _count_snapshots(node.childSnapshotList) for node in tree or [])


def _enable_uuid(extra: Any) -> bool | None:
    # The simulator appends a key set twice instead of replacing it (and so
    # might an old vCenter): the last value is the one the VM runs with.
    values = [o.value for o in extra or [] if o.key == "disk.enableUUID"]
    if not values:
        return None
    return str(values[-1]).strip().upper() == "TRUE"


def controller_name(device: Any) -> tuple[str, str] | None:
    """(kind for the address, model) of a disk controller, or None."""
    from pyVmomi import vim

    d = vim.vm.device
    kinds: list[tuple[Any, str, str]] = [
        (d.ParaVirtualSCSIController, "scsi", "pvscsi"),
        (d.VirtualLsiLogicSASController, "scsi", "lsilogic-sas"),
        (d.VirtualLsiLogicController, "scsi", "lsilogic"),
        (d.VirtualBusLogicController, "scsi", "buslogic"),
        (d.VirtualSCSIController, "scsi", "scsi"),
        (d.VirtualAHCIController, "sata", "sata"),
        (d.VirtualSATAController, "sata", "sata"),
        (d.VirtualIDEController, "ide", "ide"),
    ]
    nvme = getattr(d, "VirtualNVMEController", None)
    if nvme is not None:
        kinds.append((nvme, "nvme", "nvme"))
    for cls, kind, model in kinds:
        if isinstance(device, cls):
            return kind, model
    return None


def classify_backing(backing: Any) -> str:
    """What a disk is backed by; RDMs cannot go to an alternate location."""
    from pyVmomi import vim

    b = vim.vm.device.VirtualDisk
    if isinstance(backing, b.RawDiskMappingVer1BackingInfo):
        return "rdm-physical" if backing.compatibilityMode == "physicalMode" else "rdm-virtual"
    if isinstance(backing, (b.FlatVer2BackingInfo, b.FlatVer1BackingInfo)):
        return "flat"
    if isinstance(backing, b.SeSparseBackingInfo):
        return "sesparse"
    if isinstance(backing, (b.SparseVer2BackingInfo, b.SparseVer1BackingInfo)):
        return "sparse"
    return "other"


def disks_of(devices: list[Any]) -> list[DiscoveredDisk]:
    """The disks among a VM's devices, with their controller address."""
    from pyVmomi import vim

    controllers: dict[int, tuple[str, str, int]] = {}
    for dev in devices:
        named = controller_name(dev)
        if named is not None:
            controllers[dev.key] = (named[0], named[1], int(dev.busNumber or 0))
    found: list[DiscoveredDisk] = []
    for dev in devices:
        if not isinstance(dev, vim.vm.device.VirtualDisk):
            continue
        backing = dev.backing
        file = getattr(backing, "fileName", "") or ""
        ctrl = controllers.get(dev.controllerKey) if dev.controllerKey is not None else None
        address = None
        if ctrl is not None and dev.unitNumber is not None:
            address = f"{ctrl[0]}{ctrl[2]}:{dev.unitNumber}"
        found.append(
            DiscoveredDisk(
                unit=len(found),
                uuid=getattr(backing, "uuid", None) or None,
                capacity=int(dev.capacityInBytes or (dev.capacityInKB or 0) * 1024),
                file=file,
                datastore=file[1:].split("]", 1)[0] if file.startswith("[") else None,
                address=address,
                controller=ctrl[1] if ctrl else None,
                backing=classify_backing(backing),
            )
        )
    return found


def _datastore_type(p: dict[str, Any]) -> str:
    """summary.type, made precise by the info subtype (what pyVmomi reads)."""
    from pyVmomi import vim

    info = p.get("info")
    if isinstance(info, vim.host.VmfsDatastoreInfo):
        return "VMFS"
    if isinstance(info, vim.host.NasDatastoreInfo):
        return str(p.get("summary.type") or "NFS")
    return str(p.get("summary.type") or "")


def _name(si: Any, obj: Any) -> str | None:
    return retrieve(si, obj, ["name"]).get("name") if obj is not None else None


def discover(si: Any) -> Inventory:
    from pyVmomi import vim

    inv = Inventory(api_type=str(si.content.about.apiType or "VirtualCenter"))
    inv.datacenters = sorted(
        n for n in (_name(si, dc) for dc in objects_of_type(si, vim.Datacenter)) if n
    )
    for cluster in objects_of_type(si, vim.ClusterComputeResource):
        p = retrieve(si, cluster, ["name", "host"])
        inv.clusters.append(
            {"name": p.get("name"), "moref": cluster._moId,
             "hosts": sorted(n for n in (_name(si, h) for h in p.get("host", [])) if n)}
        )  # fmt: skip
    for host in objects_of_type(si, vim.HostSystem):
        p = retrieve(si, host, ["name", "parent"])
        parent = p.get("parent")
        cluster = _name(si, parent) if isinstance(parent, vim.ClusterComputeResource) else None
        inv.hosts.append(
            {"name": p.get("name"), "moref": host._moId, "cluster": cluster,
             "standalone": inv.api_type == "HostAgent" or cluster is None}
        )  # fmt: skip
    for ds in objects_of_type(si, vim.Datastore):
        p = retrieve(si, ds, ["name", "summary.type", "host", "info", "capability"])
        mounts = [_name(si, m.key) for m in p.get("host", [])]
        capability = p.get("capability")
        inv.datastores.append(
            {"name": p.get("name"), "moref": ds._moId, "type": _datastore_type(p),
             "hosts": sorted(h for h in mounts if h),
             "rdm_supported": bool(getattr(capability, "rawDiskMappingsSupported", False))}
        )  # fmt: skip
    for vm in objects_of_type(si, vim.VirtualMachine):
        p = retrieve(
            si, vm,
            ["name", "runtime.host", "config.guestId", "config.guestFullName",
             "config.annotation", "runtime.powerState", "config.extraConfig", "snapshot",
             "config.hardware.device", "datastore"],
        )  # fmt: skip
        snap = p.get("snapshot")
        found = DiscoveredVm(
            name=p.get("name", ""),
            moref=vm._moId,
            host=_name(si, p.get("runtime.host")),
            guest_id=p.get("config.guestId"),
            power_state=str(p["runtime.powerState"]) if "runtime.powerState" in p else None,
            enable_uuid=_enable_uuid(p.get("config.extraConfig")),
            snapshots=_count_snapshots(snap.rootSnapshotList) if snap is not None else 0,
            disks=disks_of(list(p.get("config.hardware.device", []))),
            guest_full_name=p.get("config.guestFullName") or None,
            annotation=p.get("config.annotation") or None,
            datastores=sorted(n for n in (_name(si, d) for d in p.get("datastore", [])) if n),
        )
        inv.vms.append(found)
    inv.vms.sort(key=lambda v: v.name)
    return inv
