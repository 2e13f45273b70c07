"""Changed block tracking (CBT): what a protect cycle asks vCenter.

A cycle takes a VM snapshot (quiesced through VMware Tools when the caller
wants an application-consistent point; a quiesce the guest refuses is
retried without, and the snapshot says which it is), reads each disk's
``changeId`` from the snapshot's disk backings, asks
``QueryChangedDiskAreas`` what changed since the changeId the previous cycle
stored (``"*"`` for the first: the areas holding data), reads only those,
then removes the snapshot. A changeId vCenter no longer knows (tracking was
reset: CBT turned off and on, a disk restored, a crash of the host) is
``ChangeTrackingReset``: the caller falls back to a differential resync.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from vmdr.providers.vsphere.control import snapshot_nodes
from vmdr.providers.vsphere.errors import VSphereObjectGone, VSphereTaskFailed, translate
from vmdr.providers.vsphere.session import VSphereError, retrieve, wait_for_task

__all__ = [
    "ALL_DATA",
    "SNAPSHOT_PREFIX",
    "ChangeTrackingReset",
    "CycleSnapshot",
    "Snapshot",
    "SnapshotDisk",
    "changed_areas",
    "cycle_snapshot",
    "enable_tracking",
    "remove_snapshot",
    "remove_stale_snapshots",
    "take_snapshot",
]

ALL_DATA = "*"  # the changeId that asks for every area holding data
SNAPSHOT_PREFIX = "vmdr-protect-"  # a cycle's snapshot: this and the job's id


class ChangeTrackingReset(VSphereError):
    code = "VMDR-E0615"
    http_status = 409
    msg = "vCenter no longer knows changeId {change_id!r} of {file}: change tracking was reset"
    fix = (
        "Nothing to do: the disk is compared whole this once (a differential resync) and "
        "tracked again from this cycle. If it repeats, check that nothing turns CBT off on the VM."
    )


@dataclass(frozen=True)
class SnapshotDisk:
    key: int  # the device key QueryChangedDiskAreas takes
    file: str  # "[datastore] folder/disk.vmdk"
    capacity: int  # bytes
    change_id: str  # "" when the VM does not track changes


@dataclass(frozen=True)
class Snapshot:
    ref: Any  # vim.vm.Snapshot
    quiesced: bool
    disks: dict[str, SnapshotDisk]  # by file

    @property
    def consistency(self) -> str:
        """The recovery point's label: ``app`` only if the guest was quiesced."""
        return "app" if self.quiesced else "crash"


def enable_tracking(si: Any, vm: Any) -> bool:
    """Turn CBT on (once: turning it on again would reset it); True if it was off."""
    from pyVmomi import vim

    if retrieve(si, vm, ["config.changeTrackingEnabled"]).get("config.changeTrackingEnabled"):
        return False
    wait_for_task(si, vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(changeTrackingEnabled=True)))
    return True


def take_snapshot(si: Any, vm: Any, name: str, quiesce: bool) -> Snapshot:
    """A snapshot without memory; quiesced if asked and the guest agrees."""
    from pyVmomi import vim

    def create(quiet: bool) -> Any:
        task = vm.CreateSnapshot_Task(
            name=name, description="vmdr protect cycle", memory=False, quiesce=quiet
        )
        return wait_for_task(si, task)

    try:
        ref = create(quiesce)
    except VSphereTaskFailed:
        if not quiesce:
            raise
        # The guest could not quiesce (no tools, a VSS writer failed): a
        # crash-consistent snapshot, labelled so; another cause fails again.
        ref, quiesce = create(False), False
    devices = retrieve(si, ref, ["config.hardware.device"]).get("config.hardware.device") or []
    disks = {}
    for d in devices:
        backing: Any = getattr(d, "backing", None)
        if isinstance(d, vim.vm.device.VirtualDisk) and hasattr(backing, "fileName"):
            capacity = int(d.capacityInBytes or d.capacityInKB * 1024)
            file, change_id = backing.fileName, getattr(backing, "changeId", None) or ""
            disks[file] = SnapshotDisk(d.key, file, capacity, change_id)
    return Snapshot(ref, _quiesced(si, vm, ref) if quiesce else False, disks)


def _quiesced(si: Any, vm: Any, ref: Any) -> bool:
    """What the snapshot tree says, not what was asked."""
    node = next((n for n in snapshot_nodes(si, vm) if n.snapshot._moId == ref._moId), None)
    return node is not None and bool(node.quiesced)


def changed_areas(
    si: Any, vm: Any, snapshot: Snapshot, disk: SnapshotDisk, since: str
) -> list[tuple[int, int]]:
    """``(start, length)`` of every area changed between ``since`` and the
    snapshot (``ALL_DATA``: every area holding data). vCenter answers a
    window at a time; this asks until the end of the disk."""
    from pyVmomi import vim

    areas: list[tuple[int, int]] = []
    offset = 0
    while offset < disk.capacity:
        try:
            info = vm.QueryChangedDiskAreas(
                snapshot=snapshot.ref, deviceKey=disk.key, startOffset=offset, changeId=since
            )
        except vim.fault.FileFault as exc:
            raise ChangeTrackingReset(change_id=since, file=disk.file) from exc
        except Exception as exc:
            raise translate(exc) from exc
        areas.extend((int(a.start), int(a.length)) for a in info.changedArea or [])
        if info.length <= 0:
            break  # nothing more to ask for; a reply that advances nothing would loop
        offset = int(info.startOffset) + int(info.length)
    return areas


def remove_snapshot(si: Any, snapshot: Snapshot) -> None:
    from pyVmomi import vmodl

    with contextlib.suppress(vmodl.fault.ManagedObjectNotFound, VSphereObjectGone):
        # removed already (an earlier run of the step, a stale one)
        wait_for_task(si, snapshot.ref.RemoveSnapshot_Task(removeChildren=False))


def remove_stale_snapshots(si: Any, vm: Any, prefix: str) -> int:
    """Remove the VM's snapshots named ``prefix…``: what a cycle that died
    before its clean-up left (a snapshot kept grows its delta disk)."""
    stale = [n.snapshot for n in snapshot_nodes(si, vm) if n.name.startswith(prefix)]
    for ref in stale:
        remove_snapshot(si, Snapshot(ref, False, {}))
    return len(stale)


@dataclass(frozen=True)
class CycleSnapshot:
    """What one protect cycle learnt from vCenter before reading a byte."""

    consistency: str  # "app" or "crash": what the snapshot is
    change_ids: dict[str, str]  # per disk file: the snapshot's changeId
    changed: dict[str, list[tuple[int, int]] | None]  # per disk file; None: compare whole
    reset: list[str]  # the files whose tracking was reset (compared whole)


def cycle_snapshot(
    si: Any, vm: Any, cycle: str, quiesce: bool, since: dict[str, str]
) -> CycleSnapshot:
    """Snapshot the VM for a cycle and ask what changed on each disk file of
    ``since`` from the changeId given (``""``: nothing known, compare whole).
    Tracking is turned on if it was off; snapshots of earlier cycles that
    died before their clean-up are removed first."""
    enable_tracking(si, vm)
    remove_stale_snapshots(si, vm, SNAPSHOT_PREFIX)
    snapshot = take_snapshot(si, vm, SNAPSHOT_PREFIX + cycle, quiesce)
    changed: dict[str, list[tuple[int, int]] | None] = {}
    reset: list[str] = []
    for file, previous in since.items():
        disk = snapshot.disks.get(file)
        if disk is None or not disk.change_id or not previous:
            changed[file] = None
            continue
        try:
            changed[file] = changed_areas(si, vm, snapshot, disk, previous)
        except ChangeTrackingReset:
            changed[file] = None
            reset.append(file)
    ids = {f: d.change_id for f, d in snapshot.disks.items() if d.change_id}
    return CycleSnapshot(snapshot.consistency, ids, changed, reset)
