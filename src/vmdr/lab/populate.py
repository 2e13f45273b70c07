"""Fill the lab's on-premises site with the machines the source documents talk about.

The simulator keeps VMs as metadata and creates their disks as empty files; ESX
would hold real bytes and set each disk's UUID. So the lab does what ESX would:
it sets ``backing.uuid`` when it creates a disk, writes a VMware-style
descriptor, and fills the ``-flat.vmdk`` extent with real, reproducible content
(some random, some text-like, the rest holes, so copies can be checked byte for
byte and sparse handling matters).

The machines (each one exercises a rule of the seeds):

====================  ==========================================================
web-01                disk.enableUUID=TRUE, two disks, powered on (OLR case)
db-01                 no disk.enableUUID at all, on the vSAN datastore
app-01                one snapshot ("before-patch"): reprotect must refuse it
legacy-01             Windows Server 2008 R2 SP1 on the standalone host
branch-01             on an ESX host no vCenter manages (the ``esx`` service)
mt-01                 the master target: disk.enableUUID=TRUE, a retention disk
phys-01               a physical server (no VM; fails back only through ALR)
====================  ==========================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vmdr.providers.vsphere.control import vmware_disk_uuid
from vmdr.providers.vsphere.session import objects_of_type, wait_for_task

__all__ = [
    "LAB_VMS",
    "LabVm",
    "create_vm",
    "descriptor",
    "fill_disk",
    "populate",
    "vmware_disk_uuid",
]

MiB = 1024 * 1024
REGION = 4 * MiB


@dataclass(frozen=True)
class LabVm:
    name: str
    datastore: str
    standalone: bool = False
    disks_mib: tuple[int, ...] = (256,)
    enable_uuid: str | None = "TRUE"
    guest_id: str = "debian10_64Guest"
    annotation: str = ""
    snapshot: str | None = None
    power_on: bool = True
    role: str = "workload"
    endpoint: str = "vcenter"  # the lab service that holds it: vcenter or esx
    tags: tuple[str, ...] = field(default=())


LAB_VMS: tuple[LabVm, ...] = (
    LabVm("web-01", "vmfs-01", disks_mib=(256, 128)),
    LabVm("db-01", "vsan-01", disks_mib=(256,), enable_uuid=None),
    LabVm("app-01", "vmfs-01", disks_mib=(192,), snapshot="before-patch"),
    LabVm(
        "legacy-01",
        "nfs-01",
        standalone=True,
        disks_mib=(128,),
        guest_id="windows7Server64Guest",
        annotation="Windows Server 2008 R2 SP1",
        power_on=False,
    ),
    LabVm("branch-01", "branch-local", standalone=True, disks_mib=(128,), endpoint="esx"),
    LabVm("mt-01", "vmfs-01", disks_mib=(64, 256), role="master-target"),
)

PHYSICAL_SERVERS: tuple[dict[str, Any], ...] = (
    {"name": "phys-01", "os": "Red Hat Enterprise Linux 8.8", "disks_mib": [128]},
)


def fill_disk(path: Path, size: int, seed: int) -> int:
    """Write reproducible content into a sparse file; return bytes of data written.

    Each 4 MiB region is, by a seeded draw: a hole (45 %), random bytes (30 %),
    or text-like compressible bytes (25 %). The first region always holds data,
    as a boot sector would.
    """
    rng = np.random.default_rng(seed)
    written = 0
    text = (b"vmdr lab block %d " * 1).replace(b"%d", str(seed).encode()) * (REGION // 16 + 1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, size)
        for offset in range(0, size, REGION):
            length = min(REGION, size - offset)
            draw = rng.random()
            if offset and draw < 0.45:
                continue
            if draw < 0.75:
                data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
            else:
                data = text[:length]
            os.pwrite(fd, data, offset)
            written += length
    finally:
        os.close(fd)
    return written


def descriptor(flat_name: str, size: int, disk_uuid: str) -> str:
    """A VMware descriptor for a flat extent, as ESX writes it on VMFS."""
    hexes = disk_uuid.replace("-", "")
    ddb_uuid = " ".join(hexes[i : i + 2] for i in range(0, 32, 2))
    return (
        '# Disk DescriptorFile\nversion=1\nencoding="UTF-8"\nCID=fffffffe\n'
        'parentCID=ffffffff\ncreateType="vmfs"\n\n# Extent description\n'
        f'RW {size // 512} VMFS "{flat_name}"\n\n# The Disk Data Base\n#DDB\n\n'
        'ddb.adapterType = "lsilogic"\nddb.virtualHWVersion = "13"\n'
        f'ddb.uuid = "{ddb_uuid}"\n'
    )


def _pick_host(si: Any, standalone: bool) -> Any:
    from pyVmomi import vim

    for host in objects_of_type(si, vim.HostSystem):
        in_cluster = isinstance(host.parent, vim.ClusterComputeResource)
        if in_cluster != standalone:
            return host
    raise LookupError("no suitable ESX host in the lab")


def _config_spec(vm: LabVm, disk_uuids: list[str]) -> Any:
    from pyVmomi import vim

    ctrl = vim.vm.device.VirtualDeviceSpec(
        operation="add",
        device=vim.vm.device.ParaVirtualSCSIController(
            key=1000, busNumber=0, sharedBus="noSharing"
        ),
    )
    changes = [ctrl]
    for unit, (size_mib, disk_uuid) in enumerate(zip(vm.disks_mib, disk_uuids, strict=True)):
        backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
            diskMode="persistent",
            thinProvisioned=True,
            uuid=disk_uuid,
            fileName=f"[{vm.datastore}] {vm.name}/{vm.name}{'' if unit == 0 else f'_{unit}'}.vmdk",
        )
        disk = vim.vm.device.VirtualDisk(
            key=2000 + unit,
            controllerKey=1000,
            unitNumber=unit,
            capacityInKB=size_mib * 1024,
            backing=backing,
        )
        changes.append(
            vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk)
        )
    extra = []
    if vm.enable_uuid is not None:
        extra.append(vim.option.OptionValue(key="disk.enableUUID", value=vm.enable_uuid))
    return vim.vm.ConfigSpec(
        name=vm.name,
        guestId=vm.guest_id,
        annotation=vm.annotation,
        numCPUs=2,
        memoryMB=2048,
        files=vim.vm.FileInfo(vmPathName=f"[{vm.datastore}]"),
        deviceChange=changes,
        extraConfig=extra,
    )


def create_vm(si: Any, vm: LabVm, datastore_dirs: dict[str, Path], seed: int) -> dict[str, Any]:
    """Create one lab VM with real disk content; return its inventory record."""
    from pyVmomi import vim

    host = _pick_host(si, vm.standalone)
    datacenter = next(iter(objects_of_type(si, vim.Datacenter)))
    pool = host.parent.resourcePool
    uuids = [vmware_disk_uuid() for _ in vm.disks_mib]
    task = datacenter.vmFolder.CreateVM_Task(config=_config_spec(vm, uuids), pool=pool, host=host)
    ref = wait_for_task(si, task)
    disks = []
    for unit, (size_mib, disk_uuid) in enumerate(zip(vm.disks_mib, uuids, strict=True)):
        base = f"{vm.name}{'' if unit == 0 else f'_{unit}'}"
        folder = datastore_dirs[vm.datastore] / vm.name
        folder.mkdir(parents=True, exist_ok=True)
        size = size_mib * MiB
        flat = folder / f"{base}-flat.vmdk"
        flat.unlink(missing_ok=True)  # the simulator left an empty file
        data = fill_disk(flat, size, seed * 100 + unit)
        (folder / f"{base}.vmdk").write_text(descriptor(flat.name, size, disk_uuid))
        disks.append(
            {
                "unit": unit,
                "uuid": disk_uuid,
                "capacity": size,
                "file": f"[{vm.datastore}] {vm.name}/{base}.vmdk",
                "flat_path": str(flat),
                "data_bytes": data,
            }
        )
    if vm.snapshot:
        wait_for_task(si, ref.CreateSnapshot_Task(name=vm.snapshot, memory=False, quiesce=False))
    if vm.power_on:
        wait_for_task(si, ref.PowerOnVM_Task())
    return {
        "name": vm.name,
        "moref": ref._moId,
        "host": host.name,
        "datastore": vm.datastore,
        "guest_id": vm.guest_id,
        "annotation": vm.annotation,
        "enable_uuid": vm.enable_uuid,
        "snapshot": vm.snapshot,
        "role": vm.role,
        "disks": disks,
    }


def create_physical(directory: Path, spec: dict[str, Any], seed: int) -> dict[str, Any]:
    """A physical server record with raw disk images (it has no VM)."""
    folder = directory / "physical" / spec["name"]
    folder.mkdir(parents=True, exist_ok=True)
    disks = []
    for unit, size_mib in enumerate(spec["disks_mib"]):
        path = folder / f"disk{unit}.raw"
        path.unlink(missing_ok=True)
        data = fill_disk(path, size_mib * MiB, seed * 100 + unit)
        disks.append(
            {"unit": unit, "capacity": size_mib * MiB, "path": str(path), "data_bytes": data}
        )
    return {"name": spec["name"], "kind": "physical", "os": spec["os"], "disks": disks}


def populate(
    sis: dict[str, Any], directory: Path, datastore_dirs: dict[str, Path]
) -> dict[str, Any]:
    """Create the lab machines; ``sis`` holds a session per lab endpoint."""
    vms = [
        {**create_vm(sis[vm.endpoint], vm, datastore_dirs, seed), "endpoint": vm.endpoint}
        for seed, vm in enumerate(LAB_VMS, 1)
    ]
    physical = [
        create_physical(directory, spec, seed)
        for seed, spec in enumerate(PHYSICAL_SERVERS, len(LAB_VMS) + 1)
    ]
    return {"vms": vms, "physical_servers": physical}
