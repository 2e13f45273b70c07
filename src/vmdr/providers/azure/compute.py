"""Cloud VMs: the one capability a recovery site needs from its compute service.

A failover creates a VM in the cloud from the replicated disks, starts it,
and later (failback) stops and deletes it. ``CloudCompute`` is that small
interface; ``azure_compute.AzureCompute`` implements it with
azure-mgmt-compute, ``lab_compute.LabCompute`` with a JSON file and a
synthetic workload (no Azure compute emulator exists; docs/azure.md).

Disks are named by their ``pageblob://`` URLs (the replicas vmdr wrote). The
first disk is the OS disk, the others are data disks in order (LUN 0, 1...).

Which implementation runs is the data plane's ``cloud_compute`` setting
(``control/dataplane.py``); the workflows see only this interface.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACTIVE_STATES",
    "DEALLOCATED",
    "RUNNING",
    "STARTING",
    "STOPPED",
    "STOPPING",
    "UNKNOWN",
    "CloudCompute",
    "CloudVm",
]

RUNNING = "running"
STARTING = "starting"
STOPPING = "stopping"
STOPPED = "stopped"  # powered off, compute still allocated (Azure bills it)
DEALLOCATED = "deallocated"  # powered off and released
UNKNOWN = "unknown"
ACTIVE_STATES = frozenset({RUNNING, STARTING, STOPPING})


@dataclass(frozen=True)
class CloudVm:
    name: str
    disks: tuple[str, ...]
    size: str
    network: str
    state: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "disks": list(self.disks),
            "size": self.size,
            "network": self.network,
            "state": self.state,
            "details": dict(self.details),
        }


class CloudCompute(abc.ABC):
    """Create, power and delete VMs made from existing cloud disks.

    ``start``, ``stop`` and ``delete`` are idempotent (a workflow step may run
    twice): starting a running VM or stopping a stopped one does nothing."""

    # Whether ``written_extents`` can answer: a failback asks before it
    # stops the cloud VM, so that a refusal leaves the workload running.
    knows_writes = True

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """Where its VMs are, for messages (a resource group, a folder)."""

    @abc.abstractmethod
    def create_from_disks(
        self, name: str, disk_urls: Sequence[str], size: str, network: str
    ) -> CloudVm:
        """A new VM whose disks are ``disk_urls`` (first = OS disk). ``size``
        is the VM size (``Standard_D2s_v5``); ``network`` the subnet its one
        NIC joins. Azure boots a VM it creates, the lab leaves it stopped:
        call ``start`` either way."""

    @abc.abstractmethod
    def start(self, name: str) -> CloudVm: ...

    @abc.abstractmethod
    def stop(self, name: str) -> CloudVm: ...

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Delete the VM and what ``create_from_disks`` made for it; the page
        blobs it was made from are left alone."""

    @abc.abstractmethod
    def status(self, name: str) -> CloudVm: ...

    @abc.abstractmethod
    def written_extents(
        self, name: str, disk_index: int, url: str, size: int
    ) -> list[tuple[int, int]] | None:
        """The ``(offset, length)`` ranges the VM wrote to disk ``disk_index``
        (``url``, ``size`` bytes) since it was created, or None when this
        compute service cannot tell: the caller then compares the whole
        disk with its target (a differential resync) instead of trusting
        an empty answer."""
