"""Fencing with blob leases, against the lab's Azurite: one writer per disk,
take-over by break and acquire, the old writer refused."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from vmdr.blocks import open_backend
from vmdr.providers.azure import fencing, pageblob
from vmdr.providers.azure.errors import DiskLeased, LeaseNotHeld, WriteFenced

MiB = 1 << 20
URL = Callable[[], str]


def _write(url: str, offset: int, data: bytes) -> None:
    with open_backend(url, "rw") as disk:
        disk.write(offset, data)
        disk.flush()


def _read(url: str, offset: int, length: int) -> bytes:
    with open_backend(url) as disk:
        buf = bytearray(length)
        disk.readinto(offset, buf)
        return bytes(buf)


def test_a_second_writer_is_refused_and_told_who_holds_the_disk(blob_url: URL) -> None:
    url = blob_url()
    pageblob.create(url, 2 * MiB)
    onprem = fencing.acquire(url, "onprem:mt-01")
    assert "lease=" in onprem.url and onprem.lease_id in onprem.url
    _write(onprem.url, 0, b"a" * 4096)  # the holder writes

    with pytest.raises(DiskLeased) as leased:
        fencing.acquire(url, "cloud:web-01")
    assert leased.value.code == "VMDR-E0702"
    assert "onprem:mt-01" in str(leased.value)

    with open_backend(url, "rw") as intruder:  # no lease at all
        intruder.write(4096, b"b" * 4096)
        with pytest.raises(WriteFenced) as fenced:
            intruder.flush()
        # Once fenced, the backend refuses at once, without a request.
        with pytest.raises(WriteFenced):
            intruder.write(8192, b"c" * 512)
        with pytest.raises(WriteFenced):
            intruder.zero(0, 512)
    err = fenced.value
    assert err.code == "VMDR-E0703"
    assert "onprem:mt-01" in str(err) and "no lease" in str(err)
    assert err.remedy  # the fix is spelled out
    assert onprem.lease_id not in str(err)  # the lease id is a capability: not in messages
    assert _read(url, 4096, 4096) == bytes(4096)  # nothing of the intruder landed

    info = fencing.holder(url)
    assert info.held and info.owner == "onprem:mt-01" and info.since


def test_break_then_acquire_by_the_other_site_fences_the_old_holder(blob_url: URL) -> None:
    url = blob_url()
    pageblob.create(url, 2 * MiB)
    onprem = fencing.acquire(url, "onprem:mt-01")
    old_writer = open_backend(onprem.url, "rw")  # still open when the take-over happens
    old_writer.write(0, b"1" * 4096)
    old_writer.flush()

    cloud, previous = fencing.take_over(url, "cloud:web-01")  # failover: break + acquire
    assert previous == "onprem:mt-01"
    assert fencing.holder(url).owner == "cloud:web-01"
    new_data = os.urandom(4096)
    _write(cloud.url, 0, new_data)

    old_writer.write(0, b"2" * 4096)  # the old holder, unaware
    with pytest.raises(WriteFenced) as fenced:
        old_writer.flush()
    assert "cloud:web-01" in str(fenced.value)
    assert "taken over" in str(fenced.value)
    with pytest.raises(WriteFenced):
        old_writer.resize(4 * MiB)
    old_writer.close()  # the refusal was reported once; nothing is left in flight
    assert _read(url, 0, 4096) == new_data

    with pytest.raises(LeaseNotHeld):
        fencing.release(onprem)
    with pytest.raises(WriteFenced):
        pageblob.delete(url)  # deleting is writing: the holder's lease is needed
    fencing.release(cloud)
    assert not fencing.holder(url).held
    assert fencing.break_(url) is None  # nothing to break: idempotent


def test_a_broken_lease_refuses_its_holder_before_anyone_acquires(blob_url: URL) -> None:
    url = blob_url()
    pageblob.create(url, MiB)
    lease = fencing.acquire(url, "cloud:web-01")
    assert fencing.break_(url) == "cloud:web-01"
    info = fencing.holder(url)
    assert info.state == "broken" and not info.held
    with pytest.raises(WriteFenced) as fenced:
        _write(lease.url, 0, b"x" * 512)
    assert "broken" in str(fenced.value)
    # Acquiring again with the same id is how a re-run workflow step finds its lease.
    again = fencing.acquire(url, "cloud:web-01", lease_id="6b1f0b3c-0000-4000-8000-000000000001")
    assert fencing.acquire(url, "cloud:web-01", lease_id=again.lease_id).lease_id == again.lease_id
    _write(again.url, 0, b"y" * 512)
