"""Which original VMDK each cloud disk goes back to (original location
recovery). Pure logic.

The source documents: with ``disk.enableUUID`` TRUE on the VM, disks are
matched by their UUID; without it, the match is best effort, and where no
original disk is found an *extra* disk is created and written — and the user
must be told. In order of trust:

==========================  ==========  =========================================
how                         confidence  when
==========================  ==========  =========================================
``uuid``                    exact       enableUUID TRUE and the UUIDs agree
``unit+capacity``           high        same controller/unit, same capacity
``unit, grown``             medium      same unit, the cloud disk grew (the
                                        original is grown before the resync)
``capacity``                low         the only remaining original of that size
``new disk``                none        nothing fits: an extra disk is created
==========================  ==========  =========================================

An original disk is used at most once. An original larger than its cloud
disk never matches: the block engine refuses to write into a larger target
(it cannot know what the extra bytes should be), so it becomes a new disk
instead, with a warning. Originals left over are reported: failback leaves
them untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CloudDisk", "DiskMatch", "MatchPlan", "OriginalDisk", "match_disks"]

GiB = 1 << 30


@dataclass(frozen=True)
class OriginalDisk:
    unit: str  # controller and unit, e.g. "scsi0:1"
    capacity: int
    file: str  # "[datastore] folder/disk.vmdk"
    uuid: str | None = None


@dataclass(frozen=True)
class CloudDisk:
    name: str
    capacity: int
    source_unit: str  # where it came from, recorded at protection time
    source_uuid: str | None = None


@dataclass(frozen=True)
class DiskMatch:
    cloud: CloudDisk
    original: OriginalDisk | None
    method: str
    confidence: str
    note: str = ""


@dataclass
class MatchPlan:
    matches: list[DiskMatch] = field(default_factory=list)
    unused_originals: list[OriginalDisk] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def new_disks(self) -> list[DiskMatch]:
        return [m for m in self.matches if m.original is None]


def _size(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n} bytes"


def match_disks(
    vm: str, enable_uuid: bool | None, cloud: list[CloudDisk], originals: list[OriginalDisk]
) -> MatchPlan:
    plan = MatchPlan()
    left = list(originals)
    pending: list[CloudDisk] = []
    chosen: dict[str, DiskMatch] = {}

    def take(
        disk: CloudDisk, orig: OriginalDisk, method: str, confidence: str, note: str = ""
    ) -> None:
        left.remove(orig)
        chosen[disk.name] = DiskMatch(disk, orig, method, confidence, note)

    # 1. By UUID, only when the VM guarantees stable UUIDs.
    for disk in cloud:
        hit = None
        if enable_uuid and disk.source_uuid:
            hit = next((o for o in left if o.uuid and o.uuid.lower() == disk.source_uuid.lower()),
                       None)  # fmt: skip
        if hit is not None and hit.capacity <= disk.capacity:
            take(disk, hit, "uuid", "exact")
        else:
            if enable_uuid and disk.source_uuid:
                plan.warnings.append(
                    f"{vm}: cloud disk {disk.name} came from a disk with UUID {disk.source_uuid}, "
                    "which the VM no longer has (or has at a larger size); matching it by its "
                    "position and size instead."
                )
            pending.append(disk)
    # 2. Same controller/unit: same size, or grown in the cloud.
    for disk in list(pending):
        same = next((o for o in left if o.unit == disk.source_unit), None)
        if same is None:
            continue
        if same.capacity == disk.capacity:
            take(disk, same, "unit+capacity", "high")
            pending.remove(disk)
        elif same.capacity < disk.capacity:
            grows = f"the original grows from {_size(same.capacity)} to {_size(disk.capacity)}"
            take(disk, same, "unit, grown", "medium", grows)
            pending.remove(disk)
    # 3. The only remaining original of exactly that size.
    for disk in list(pending):
        fits = [o for o in left if o.capacity == disk.capacity]
        if len(fits) == 1:
            where = f"it was at {disk.source_unit}, the original is at {fits[0].unit}"
            take(disk, fits[0], "capacity", "low", f"matched only by its size; {where}")
            pending.remove(disk)
    # 4. Nothing fits: an extra disk, said loudly.
    for disk in pending:
        note = "no original disk fits; a new disk will be created"
        chosen[disk.name] = DiskMatch(disk, None, "new disk", "none", note)
        plan.warnings.append(
            f"{vm}: no original disk matches cloud disk {disk.name} ({_size(disk.capacity)}, was "
            f"{disk.source_unit}); failback will ADD a new disk to the VM and write it in full. "
            "Check the VM's disks after failback."
        )
    plan.matches = [chosen[d.name] for d in cloud]
    plan.unused_originals = left
    for orig in left:
        plan.warnings.append(
            f"{vm}: original disk {orig.file} ({orig.unit}) matches no cloud disk and is left "
            "untouched."
        )
    return plan
