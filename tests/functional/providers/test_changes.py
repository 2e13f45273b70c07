"""Change tracking against the lab's Azurite: its page-range diff is found
dishonest (so it is never used), and vmdr's own dirty map of writes made
through vmdr drives an exact DirtyCopy."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vmdr.blocks import DirtyCopy, FullCopy, open_backend
from vmdr.providers.azure import changes, pageblob
from vmdr.providers.azure.blobs import blob_client, service_client
from vmdr.providers.azure.errors import ChangeTrackingUnavailable
from vmdr.providers.azure.tracking import DirtyMap, open_tracked

MiB = 1 << 20
URL = Callable[[], str]


def test_azurite_diff_is_found_dishonest_and_a_fallback_is_chosen(
    account: str, blob_url: URL, tmp_path: Path
) -> None:
    url = blob_url()
    pageblob.create(url, 4 * MiB)  # and its container, where the probe runs
    with service_client(account) as service:
        container = service.get_container_client("tests")
        verdict = changes.diff_is_honest(container)
        assert not verdict.honest
        # Azurite's known lie (docs/emulators.md): current ranges, no cleared ones.
        assert "unchanged range" in verdict.reason and "cleared" in verdict.reason
        assert not list(container.list_blobs(name_starts_with="vmdr-diff-probe"))

    service, blob, _ = blob_client(url)
    with service:
        snapshot = str(blob.create_snapshot()["snapshot"])
    changes.forget_verdicts()
    with pytest.raises(ChangeTrackingUnavailable) as info:
        changes.changed_extents(url, snapshot)  # probes the service itself, once
    assert "not honest" in str(info.value)

    plan = changes.choose_sync(url, since_snapshot=snapshot)
    assert plan.method == "diff-resync" and plan.dirty is None
    with open_tracked(url, tmp_path / "m") as tracked:
        tracked.write(MiB, os.urandom(4096))
        plan = changes.choose_sync(url, since_snapshot=snapshot, dirty_map=tracked)
    assert plan.method == "dirty-map"
    assert plan.dirty is not None and [(e.start, e.length) for e in plan.dirty] == [(MiB, 65536)]


def test_writes_through_vmdr_make_a_dirty_map_for_an_exact_copy(
    blob_url: URL, tmp_path: Path
) -> None:
    size = 16 * MiB
    url = blob_url()
    replica = tmp_path / "replica.raw"
    with pageblob.open_pageblob(url, "rw", create=True, size=size) as disk:
        disk.write(0, os.urandom(8 * MiB))
        disk.flush()
        with open_backend(str(replica), "rw", create=True) as copy:
            FullCopy(disk, copy).run()  # the replica is in sync here

    rng = np.random.default_rng(11)
    map_path = tmp_path / "disk0.map"
    with open_tracked(url, map_path) as tracked:  # the agent path: writes go through vmdr
        for _ in range(120):
            length = int(rng.integers(1, 33)) * 4096
            offset = int(rng.integers(0, (size - length) // 4096)) * 4096
            if rng.random() < 0.1:
                tracked.zero(offset, length)
            else:
                tracked.write(offset, rng.bytes(length))
    # A restart later (new process, same file): take the map and sync.
    with DirtyMap(map_path, url=url, size=size) as dm:
        dirty = dm.take()
        with open_backend(url) as src, open_backend(str(replica), "rw") as dst:
            counters = DirtyCopy(src, dst, dirty).run()
            dst.flush()
        dm.commit()
    assert 0 < counters.total < size
    with open_backend(url) as src:
        want = bytearray(size)
        src.readinto(0, want)
    assert replica.read_bytes() == bytes(want)
