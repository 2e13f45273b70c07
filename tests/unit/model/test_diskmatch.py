"""Matching cloud disks to original VMDKs, on many shapes of VM."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vmdr.model.diskmatch import CloudDisk, OriginalDisk, match_disks

G = 1 << 30


def orig(unit: str, gib: int, uuid: str | None = None) -> OriginalDisk:
    return OriginalDisk(unit, gib * G, f"[vmfs-01] vm/{unit.replace(':', '_')}.vmdk", uuid)


def cloud(name: str, unit: str, gib: int, uuid: str | None = None) -> CloudDisk:
    return CloudDisk(name, gib * G, unit, uuid)


def summary(plan):  # type: ignore[no-untyped-def]
    return [(m.cloud.name, m.original.unit if m.original else None, m.method, m.confidence)
            for m in plan.matches]  # fmt: skip


def test_uuids_decide_when_enable_uuid_is_true_even_if_units_moved() -> None:
    originals = [orig("scsi0:0", 40, "U-A"), orig("scsi0:1", 100, "U-B")]
    disks = [cloud("d0", "scsi0:1", 40, "u-a"), cloud("d1", "scsi0:0", 100, "U-B")]
    plan = match_disks("web-01", True, disks, originals)
    assert summary(plan) == [("d0", "scsi0:0", "uuid", "exact"), ("d1", "scsi0:1", "uuid", "exact")]
    assert plan.warnings == [] and plan.unused_originals == []


def test_without_enable_uuid_uuids_are_ignored() -> None:
    # The same UUIDs are there, but the VM does not guarantee them: not trusted.
    originals = [orig("scsi0:0", 40, "U-A"), orig("scsi0:1", 100, "U-B")]
    disks = [cloud("d0", "scsi0:0", 40, "U-B"), cloud("d1", "scsi0:1", 100, "U-A")]
    plan = match_disks("db-01", None, disks, originals)
    assert summary(plan) == [
        ("d0", "scsi0:0", "unit+capacity", "high"),
        ("d1", "scsi0:1", "unit+capacity", "high"),
    ]


def test_grown_in_the_cloud_matches_and_says_so() -> None:
    plan = match_disks("app-01", False, [cloud("d0", "scsi0:0", 60)], [orig("scsi0:0", 40)])
    (m,) = plan.matches
    assert (m.method, m.confidence) == ("unit, grown", "medium")
    assert "grows from 40.0 GiB to 60.0 GiB" in m.note


def test_an_original_larger_than_the_cloud_disk_never_matches() -> None:
    plan = match_disks(
        "app-01", True, [cloud("d0", "scsi0:0", 40, "U")], [orig("scsi0:0", 60, "U")]
    )
    assert summary(plan) == [("d0", None, "new disk", "none")]
    assert any("no longer has (or has at a larger size)" in w for w in plan.warnings)
    assert any("ADD a new disk" in w for w in plan.warnings)
    assert [o.unit for o in plan.unused_originals] == ["scsi0:0"]


def test_moved_unit_matches_by_unique_capacity_with_low_confidence() -> None:
    plan = match_disks("vm", False, [cloud("d0", "scsi0:3", 77)],
                       [orig("scsi0:0", 40), orig("scsi1:0", 77)])  # fmt: skip
    assert summary(plan) == [("d0", "scsi1:0", "capacity", "low")]
    assert [o.unit for o in plan.unused_originals] == ["scsi0:0"]


def test_ambiguous_capacity_is_not_guessed() -> None:
    plan = match_disks("vm", False, [cloud("d0", "scsi0:3", 50)],
                       [orig("scsi0:0", 50), orig("scsi0:1", 50)])  # fmt: skip
    assert summary(plan) == [("d0", None, "new disk", "none")]
    assert len(plan.new_disks) == 1 and len(plan.unused_originals) == 2


def test_disk_added_in_the_cloud_becomes_a_new_disk_loudly() -> None:
    originals = [orig("scsi0:0", 40, "U-A")]
    disks = [cloud("d0", "scsi0:0", 40, "U-A"), cloud("d1", "scsi0:1", 10, None)]
    plan = match_disks("web-01", True, disks, originals)
    assert summary(plan)[1] == ("d1", None, "new disk", "none")
    (warning,) = plan.warnings
    assert "web-01" in warning and "d1" in warning and "ADD a new disk" in warning


def test_vm_deleted_on_premises_everything_is_new() -> None:
    plan = match_disks("gone", True, [cloud("d0", "scsi0:0", 40, "U")], [])
    assert summary(plan) == [("d0", None, "new disk", "none")]


disk_shapes = st.lists(
    st.tuples(
        st.sampled_from(["scsi0:0", "scsi0:1", "scsi0:2", "scsi1:0"]),
        st.integers(1, 4),
        st.sampled_from([None, "U1", "U2", "U3"]),
    ),
    max_size=5,
)


@settings(max_examples=300)
@given(disk_shapes, disk_shapes, st.sampled_from([True, False, None]))
def test_properties(cloud_shape: list, orig_shape: list, enable_uuid: bool | None) -> None:  # type: ignore[type-arg]
    disks = [cloud(f"d{i}", u, g, x) for i, (u, g, x) in enumerate(cloud_shape)]
    originals = [orig(u, g, x) for u, g, x in orig_shape]
    plan = match_disks("vm", enable_uuid, disks, originals)
    assert [m.cloud for m in plan.matches] == disks  # one entry per cloud disk, in order
    used = [m.original for m in plan.matches if m.original is not None]
    assert len({id(o) for o in used}) == len(used)  # an original is used at most once
    assert len(used) + len(plan.unused_originals) == len(originals)
    for m in plan.matches:
        if m.original is not None:
            assert m.original.capacity <= m.cloud.capacity  # never a larger target
            if m.method == "uuid":
                assert enable_uuid and m.cloud.source_uuid
        else:
            assert any(m.cloud.name in w and "ADD a new disk" in w for w in plan.warnings)
