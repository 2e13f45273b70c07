"""Change-tracking decisions, with a fake page blob (no service): the probe's
verdict, the honest diff path, and the fallbacks."""

from __future__ import annotations

import os

import pytest

from vmdr.blocks import DirtyCopy, Extent, open_backend
from vmdr.blocks.errors import BackendIOError
from vmdr.providers.azure.changes import (
    REGION,
    ProbeResult,
    changed_extents,
    choose_sync,
    diff_extents,
    diff_is_honest,
    judge,
)
from vmdr.providers.azure.errors import ChangeTrackingUnavailable

from .fakes import FakeContainer, FakePageBlob, Range

URL = "pageblob://acct/disks/web-01"
HONEST = ProbeResult(True, "test")
LYING = ProbeResult(False, "it reports the unchanged range")


def test_judge_accepts_the_true_diff_and_a_safe_superset() -> None:
    true_diff = [Extent(REGION, REGION), Extent(2 * REGION, REGION, zero=True)]
    assert judge(true_diff).honest
    assert judge([Extent(REGION, 2 * REGION)]).honest  # cleared reported as changed: safe
    assert judge([Extent(REGION, 3 * REGION)]).honest  # coarser than needed, still a diff


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ([Extent(0, 2 * REGION)], ["unchanged", "cleared"]),  # what Azurite answers
        ([Extent(REGION, REGION)], ["cleared"]),  # cleared ranges dropped: stale data
        ([Extent(2 * REGION, REGION, zero=True)], ["written"]),
        ([], ["written", "cleared"]),
        ([Extent(0, 4 * REGION)], ["unchanged"]),
    ],
)
def test_judge_rejects_diffs_that_miss_or_are_not_diffs(
    answer: list[Extent], words: list[str]
) -> None:
    verdict = judge(answer)
    assert not verdict.honest
    for word in words:
        assert word in verdict.reason


@pytest.mark.parametrize(
    ("mode", "honest"),
    [("honest", True), ("coarse", True), ("azurite", False), ("no-cleared", False)],
)
def test_the_probe_runs_its_steps_and_always_deletes_its_blob(mode: str, honest: bool) -> None:
    container = FakeContainer(mode)
    verdict = diff_is_honest(container)
    assert verdict.honest is honest, verdict.reason
    (blob,) = container.blobs
    assert blob.calls == [
        "create",
        "upload",
        "upload",
        "snapshot",
        "upload",
        "clear",
        "diff",
        "delete",
    ]
    assert blob.deleted


def test_a_failing_probe_still_deletes_its_blob() -> None:
    container = FakeContainer("fail-after-snapshot")
    with pytest.raises(BackendIOError):
        diff_is_honest(container)
    assert container.blobs[0].deleted


def test_diff_extents_turns_inclusive_ranges_into_merged_extents() -> None:
    ranges = [Range(0, 511), Range(512, 4095), Range(8192, 9215, cleared=True)]
    assert diff_extents(ranges) == [Extent(0, 4096), Extent(8192, 1024, zero=True)]


def _disk_pair_with_history() -> tuple[str, str, FakePageBlob, str]:
    """A source disk and a stale copy, and a fake blob that saw the same writes
    after its snapshot (as the service would)."""
    size = 4 << 20
    src = f"memory:src-{os.urandom(4).hex()}?size={size}&align=512"
    dst = f"memory:dst-{os.urandom(4).hex()}?size={size}&align=512"
    blob = FakePageBlob("honest")
    base = os.urandom(size)
    with open_backend(src, "rw") as a, open_backend(dst, "rw") as b:
        for disk in (a, b):
            disk.write(0, base)
        blob.upload_page(base, 0, size)
        snapshot = blob.create_snapshot()["snapshot"]
        for offset, length in [(4096, 8192), (1 << 20, 512), (3 << 20, 65536)]:
            data = os.urandom(length)
            a.write(offset, data)
            blob.upload_page(data, offset, length)
        a.zero(2 << 20, 131072)  # a discard: must reach the copy as zeros
        blob.clear_page(2 << 20, 131072)
    return src, dst, blob, snapshot


def test_the_honest_diff_drives_a_dirty_copy_to_an_identical_disk() -> None:
    src, dst, blob, snapshot = _disk_pair_with_history()
    dirty = changed_extents(URL, snapshot, blob=blob, verdict=HONEST)
    assert Extent(2 << 20, 131072, zero=True) in dirty
    plan = choose_sync(URL, since_snapshot=snapshot, blob=blob, verdict=HONEST)
    assert plan.method == "service-diff" and plan.dirty == dirty
    with open_backend(src) as a, open_backend(dst, "rw") as b:
        counters = DirtyCopy(a, b, dirty).run()
        assert counters.total < a.size() // 8  # only the changes travelled
        want, got = bytearray(a.size()), bytearray(b.size())
        a.readinto(0, want)
        b.readinto(0, got)
    assert want == got


class _Map:
    def __init__(self) -> None:
        self.taken = 0

    def take(self) -> list[Extent]:
        self.taken += 1
        return [Extent(0, 65536)]


def test_a_dishonest_service_falls_back_to_the_dirty_map_then_to_diff_resync() -> None:
    blob = FakePageBlob("azurite")
    with pytest.raises(ChangeTrackingUnavailable) as info:
        changed_extents(URL, "snap", blob=blob, verdict=LYING)
    assert info.value.code == "VMDR-E0705" and "DiffResync" in info.value.remedy
    assert "diff" not in blob.calls  # a dishonest service is not even asked

    tracked = _Map()
    plan = choose_sync(URL, since_snapshot="snap", dirty_map=tracked, blob=blob, verdict=LYING)
    assert plan.method == "dirty-map" and plan.dirty == [Extent(0, 65536)] and tracked.taken == 1
    assert "not honest" in plan.reason

    plan = choose_sync(URL, since_snapshot="snap", blob=blob, verdict=LYING)
    assert plan.method == "diff-resync" and plan.dirty is None

    plan = choose_sync(URL, dirty_map=_Map())
    assert plan.method == "dirty-map" and "no snapshot" in plan.reason


def test_an_unprobed_service_is_not_trusted() -> None:
    with pytest.raises(ChangeTrackingUnavailable, match="never probed"):
        changed_extents(URL, "snap", blob=FakePageBlob("honest"))
