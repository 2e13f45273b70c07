"""What the prechecks judge: plain facts about the machine, the master
target, the process server and the user's request, gathered by the
configuration server from its database and the roles' heartbeats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vmdr.model.diskmatch import CloudDisk

__all__ = [
    "DiskFacts",
    "MasterTargetFacts",
    "ProcessServerFacts",
    "ReprotectRequest",
    "VmFacts",
    "storage_vmotioned",
]


@dataclass(frozen=True)
class DiskFacts:
    address: str  # "scsi0:1"
    capacity: int
    file: str
    datastore: str | None
    datastore_type: str | None  # VMFS | vsan | NFS
    uuid: str | None = None
    backing: str = "flat"  # flat | rdm-physical | rdm-virtual | ...


@dataclass(frozen=True)
class VmFacts:
    """The machine as the configuration server knows it."""

    name: str
    in_database: bool = True
    kind: Literal["vm", "physical"] = "vm"
    exists: bool = True  # False when discovery found the VM deleted
    vcenter: str | None = None  # the endpoint it was protected from
    endpoint_kind: Literal["vcenter", "esx"] = "vcenter"
    endpoint_discovered: bool = True
    snapshots: int = 0
    enable_uuid: bool | None = True
    guest: str = ""  # guest full name and annotation, as discovered
    disks: tuple[DiskFacts, ...] = ()


@dataclass(frozen=True)
class MasterTargetFacts:
    name: str
    registered: bool = True
    healthy: bool = True
    vm_discovered: bool = True
    enable_uuid: bool | None = True
    snapshots: int = 0
    storage_vmotioned: bool = False
    powered_on: bool | None = True  # None: discovery did not say
    disks: int = 2
    retention_ready: bool = True
    host: str | None = None
    host_datastores: frozenset[str] = frozenset()  # what its ESX host mounts


@dataclass(frozen=True)
class ProcessServerFacts:
    name: str
    healthy: bool = True
    site: str = "recovery"
    reaches_master_target: bool | None = True  # None: not measured yet


@dataclass(frozen=True)
class ReprotectRequest:
    vcenter: str | None  # the vCenter chosen to fail back to
    configuration_server: str  # this configuration server's identity
    protected_by: str  # the configuration server that protected the item
    cloud_disks: tuple[CloudDisk, ...] = ()
    mode: Literal["auto", "olr", "alr"] = "auto"
    datastore: str | None = None  # for ALR: where the new VM goes
    datastore_type: str | None = None
    remove_snapshots: bool = False


def storage_vmotioned(then: list[str] | None, now: list[str]) -> bool:
    """Whether an appliance VM moved since registration: a datastore it used
    then is no longer used. One it uses in addition is not a move: the disks
    attached to it for failbacks live on other datastores."""
    return then is not None and not set(then) <= set(now)
