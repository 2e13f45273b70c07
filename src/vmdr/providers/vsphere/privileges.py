"""Does the vCenter account have what discovery and failback need?

Checked on the root folder with ``AuthorizationManager.
FetchUserPrivilegeOnEntities`` (propagating roles make it hold below), and
reported by name, so the user can grant exactly what is missing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["REQUIRED", "missing", "missing_privileges"]

REQUIRED: dict[str, str] = {
    "System.View": "see the inventory",
    "System.Read": "read properties",
    "Datastore.Browse": "find the VMDKs of a VM",
    "Datastore.AllocateSpace": "create disks for alternate location recovery",
    "Datastore.FileManagement": "create folders and disks on datastores",
    "Resource.AssignVMToPool": "create the failed-back VM",
    "VirtualMachine.Inventory.Create": "create the failed-back VM (ALR)",
    "VirtualMachine.Inventory.Delete": "remove a VM on commit or cleanup",
    "VirtualMachine.Interact.PowerOn": "power the VM on after failback",
    "VirtualMachine.Interact.PowerOff": "power the VM off before resync",
    "VirtualMachine.State.RemoveSnapshot": "remove snapshots before reprotect",
    "VirtualMachine.State.CreateSnapshot": "snapshot the VM for each protect cycle",
    "VirtualMachine.Config.ChangeTracking": "turn changed block tracking on",
    "VirtualMachine.Provisioning.DiskRandomRead": "ask what changed (QueryChangedDiskAreas)",
    "VirtualMachine.Config.AddExistingDisk": "attach the failed-back disks",
    "VirtualMachine.Config.RemoveDisk": "detach disks from the master target",
    "VirtualMachine.Config.AddNewDisk": "add a disk when no original matches",
    "VirtualMachine.Config.AdvancedConfig": "set disk.enableUUID",
}


def missing(granted: set[str]) -> list[str]:
    """The required privileges not in ``granted``, each with what it is for."""
    return [f"{p} ({why})" for p, why in sorted(REQUIRED.items()) if p not in granted]


def missing_privileges(si: Any, user: str) -> list[str]:
    content = si.content
    result = content.authorizationManager.FetchUserPrivilegeOnEntities(
        entities=[content.rootFolder], userName=user
    )
    granted = set(result[0].privileges) if result else set()
    return missing(granted)
