"""The on-premises VM operations a workflow step needs, by VM name, on one
vCenter session: the interface the steps are written against
(``Workflows.vsphere`` yields one), so that a unit test of a step can hand
them an in-memory one instead of a vCenter."""

from __future__ import annotations

from typing import Any, Protocol

from vmdr.providers.vsphere import cbt, control
from vmdr.providers.vsphere.cbt import CycleSnapshot
from vmdr.providers.vsphere.control import NewDisk, VmNotFound

__all__ = ["VmControl", "VmOperations"]


class VmOperations(Protocol):
    def inventory(self) -> Any:
        """Discovery of the whole vCenter (``discovery.Inventory``)."""
        ...

    def exists(self, name: str) -> bool: ...

    def power_on(self, name: str) -> None: ...

    def power_off(self, name: str, guest_timeout: float) -> str:
        """How it went off: ``"guest"`` (shut down by its tools), ``"hard"``
        or ``"already"``."""
        ...

    def remove_snapshots(self, name: str) -> int: ...

    def create(self, name: str, host: str, datastore: str, disks: list[NewDisk]) -> None:
        """A powered-off VM with ``disks`` (their files created on ``datastore``)."""
        ...

    def delete(self, name: str) -> None:
        """Power off (hard) if needed, then destroy the VM and its files."""
        ...

    def attach(self, name: str, files: list[str]) -> dict[str, str]:
        """Hot-add existing VMDKs to the VM (those attached already stay);
        each file's VMDK UUID."""
        ...

    def detach(self, name: str, files: list[str]) -> list[str]:
        """Remove these VMDKs from the VM, keeping them; the files detached."""
        ...

    def cycle_snapshot(
        self, name: str, cycle: str, quiesce: bool, since: dict[str, str]
    ) -> CycleSnapshot:
        """Snapshot the VM for a protect cycle and ask, per disk file, what
        changed since the changeId given (``cbt.cycle_snapshot``)."""
        ...

    def remove_cycle_snapshots(self, name: str) -> int:
        """Remove the VM's protect-cycle snapshots; how many there were."""
        ...


class VmControl:
    """``VmOperations`` on a pyVmomi session (``si``, also there for discovery)."""

    def __init__(self, si: Any) -> None:
        self.si = si

    def inventory(self) -> Any:
        from vmdr.providers.vsphere.discovery import discover

        return discover(self.si)

    def exists(self, name: str) -> bool:
        try:
            control.find_vm(self.si, name)
        except VmNotFound:
            return False
        return True

    def power_on(self, name: str) -> None:
        control.power_on(self.si, control.find_vm(self.si, name))

    def power_off(self, name: str, guest_timeout: float) -> str:
        vm = control.find_vm(self.si, name)
        return control.power_off(self.si, vm, guest_timeout=guest_timeout)

    def remove_snapshots(self, name: str) -> int:
        return control.remove_snapshots(self.si, control.find_vm(self.si, name))

    def create(self, name: str, host: str, datastore: str, disks: list[NewDisk]) -> None:
        control.create_vm(self.si, name, host, datastore, disks)

    def delete(self, name: str) -> None:
        control.delete_vm(self.si, control.find_vm(self.si, name))

    def attach(self, name: str, files: list[str]) -> dict[str, str]:
        return control.attach_disks(self.si, control.find_vm(self.si, name), files)

    def detach(self, name: str, files: list[str]) -> list[str]:
        return control.detach_disks(self.si, control.find_vm(self.si, name), files)

    def cycle_snapshot(
        self, name: str, cycle: str, quiesce: bool, since: dict[str, str]
    ) -> CycleSnapshot:
        vm = control.find_vm(self.si, name)
        return cbt.cycle_snapshot(self.si, vm, cycle, quiesce, since)

    def remove_cycle_snapshots(self, name: str) -> int:
        vm = control.find_vm(self.si, name)
        return cbt.remove_stale_snapshots(self.si, vm, cbt.SNAPSHOT_PREFIX)
