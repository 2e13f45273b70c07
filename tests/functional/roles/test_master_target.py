"""The master target's edges: corrupted frames, a missing retention drive."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from vmdr.blocks.messages import BlockDigests, DataRun, DiskInfo, Done
from vmdr.lab.pair import Pair
from vmdr.transport import frames
from vmdr.transport.client import RemoteError

MiB = 1 << 20


def stream(items: list[frames.Item]) -> bytes:
    enc = frames.Encoder()
    return b"".join(bytes(p) for item in items for p in enc.encode(item))


def changeset(data: bytes, size: int) -> list[frames.Item]:
    return [
        frames.Control({"op": "begin", "initial": True, "resume_from": 0}),
        DiskInfo(size, 65536),
        DataRun(0, data),
        Done(size),
        frames.Control({"op": "cut", "time": 1.0, "tag": None, "kind": "crash"}),
        frames.End(),
    ]


def test_tampered_frame_is_rejected_and_nothing_of_it_written(pair: Pair) -> None:
    with pair.mt_client() as c:
        c.put("/v1/disks/d1", pair.disk("d1", "d1/d1-flat.vmdk", size=MiB, create=True))
        body = bytearray(stream(changeset(b"\xab" * (256 << 10), MiB)))
        body[len(body) // 2] ^= 0x40  # inside the DataRun's payload
        with pytest.raises(RemoteError) as err:
            c.upload("/v1/disks/d1/changesets/initial", [bytes(body)])
        assert err.value.status == 400 and err.value.remote_code == "VMDR-E0301"
        assert (pair.ds / "d1/d1-flat.vmdk").read_bytes() == bytes(MiB)
        assert c.get("/v1/disks/d1/points") == []
        # The same change set, intact, is then accepted.
        answer = c.upload("/v1/disks/d1/changesets/initial",
                          [stream(changeset(b"\xab" * (256 << 10), MiB))])  # fmt: skip
        assert answer["point"]["changeset"] == "initial"
    data = (pair.ds / "d1/d1-flat.vmdk").read_bytes()
    assert data[: 256 << 10] == b"\xab" * (256 << 10) and not any(data[256 << 10 :])


def test_missing_retention_drive_refuses_replication(pair: Pair) -> None:
    shutil.rmtree(pair.retention)
    with pair.mt_client() as c:
        with pytest.raises(RemoteError) as err:
            c.put("/v1/disks/d1", pair.disk("d1", "d1/d1-flat.vmdk", size=MiB, create=True))
        assert err.value.remote_code == "VMDR-E0401"
        usage = c.get("/v1/retention")
        assert usage["ready"] is False and usage["problem"]["code"] == "VMDR-E0401"
    os.mkdir(pair.retention)
    with pair.mt_client() as c:
        c.put("/v1/disks/d1", pair.disk("d1", "d1/d1-flat.vmdk", size=MiB, create=True))
        assert c.get("/v1/retention")["ready"] is True


def test_unknown_fields_and_bad_ids_are_4xx(pair: Pair) -> None:
    with pair.mt_client() as c:
        with pytest.raises(RemoteError) as err:
            c.put("/v1/disks/d1", {"datastore": "ds1", "path": "a-flat.vmdk", "evil": 1})
        assert err.value.status == 422
        with pytest.raises(RemoteError) as err:
            c.get("/v1/disks/..%2F..%2Fetc")
        assert err.value.status in (400, 404)
        with pytest.raises(RemoteError) as err:
            c.get("/v1/disks/nope")
        assert err.value.status == 404 and err.value.remote_code == "VMDR-E0423"
    assert not Path("/etc/vmdr").exists()


def holders(path: Path) -> set[int]:
    """The processes that have ``path`` open (from /proc/*/fd)."""
    pids = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = list(fd_dir.iterdir())
        except OSError:  # gone, or not ours to read
            continue
        for link in links:
            try:
                if os.readlink(link) == str(path):
                    pids.add(int(fd_dir.parent.name))
            except OSError:
                continue
    return pids


def test_a_digest_stream_the_client_drops_releases_the_disk(pair: Pair) -> None:
    """A process server that goes away mid-stream (restart, network) must not
    leave the master target hashing, or holding the disk open, for ever."""
    size = 2048 * MiB  # big enough for a hashing worker, and to be cut mid-way
    with pair.mt_client() as c:
        c.put("/v1/disks/d1", pair.disk("d1", "d1/d1-flat.vmdk", size=size, create=True))
    target = pair.ds / "d1" / "d1-flat.vmdk"
    with open(target, "r+b") as f:
        chunk = b"\x01" * (16 * MiB)  # data, not zeros: every block is hashed
        for offset in range(0, size, len(chunk)):
            os.pwrite(f.fileno(), chunk, offset)
    request = {"block_size": 65536, "start_block": 0, "size": size}
    with pair.mt_client() as c, c.download("/v1/disks/d1/digests", request) as raw:
        assert next(iter(raw))  # the stream has begun; now drop it
    deadline = time.monotonic() + 10
    while holders(target) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert holders(target) == set()


def test_a_digest_request_never_grows_the_disk(pair: Pair) -> None:
    """Asking for digests is a read: a huge ``size`` gets the disk's digests
    and holes beyond its end, and the disk keeps its size (it used to grow to
    8 TiB, after which change sets were refused)."""
    with pair.mt_client() as c:
        c.put("/v1/disks/d1", pair.disk("d1", "d1/d1-flat.vmdk", size=MiB, create=True))
        c.upload("/v1/disks/d1/changesets/initial", [stream(changeset(b"\xab" * MiB, MiB))])
        asked = 4 * MiB
        request = {"block_size": 65536, "start_block": 0, "size": asked}
        with c.download("/v1/disks/d1/digests", request) as raw:
            segs = [m for m in frames.iter_messages(raw) if isinstance(m, BlockDigests)]
        assert sum(s.count for s in segs) == asked // 65536
        masks = [bool(b) for s in segs for b in s.zero_mask()]
        assert masks == [False] * 16 + [True] * 48  # data, then holes past the end
        assert (pair.ds / "d1/d1-flat.vmdk").stat().st_size == MiB
        with pytest.raises(RemoteError) as err:  # smaller than the disk: refused, not cut
            c.post("/v1/disks/d1/digests", {"block_size": 65536, "start_block": 0,
                                            "size": MiB // 2})  # fmt: skip
        assert (err.value.status, err.value.remote_code) == (409, "VMDR-E0206")
        # A change set is still accepted on the disk as it is.
        answer = c.upload("/v1/disks/d1/changesets/cs-2", [stream([
            frames.Control({"op": "begin", "initial": False, "resume_from": 0}),
            DiskInfo(MiB, 65536), DataRun(0, b"\xcd" * 65536), Done(MiB),
            frames.Control({"op": "cut", "time": 2.0, "tag": None, "kind": "crash"}),
            frames.End()])])  # fmt: skip
        assert answer["point"]["changeset"] == "cs-2"


def test_a_bad_disk_record_is_quarantined_and_the_rest_served(pair: Pair) -> None:
    """A disk record that now leads outside its datastore (a symlink put
    there since), or that is unreadable, must not stop the master target:
    it starts, serves the other disks, and reports the bad ones."""
    with pair.mt_client() as c:
        for disk in ("good", "moved"):
            c.put(
                f"/v1/disks/{disk}",
                pair.disk(disk, f"{disk}/{disk}-flat.vmdk", size=MiB, create=True),
            )
    pair.mt.stop()
    outside = pair.root / "elsewhere"
    outside.mkdir()
    shutil.rmtree(pair.ds / "moved")
    (pair.ds / "moved").symlink_to(outside)
    records = pair.mt.state / "disks"
    (records / "torn.json").write_text('{"datastore": "ds1", "pa')
    pair.mt.start()
    with pair.mt_client() as c:
        assert c.get("/v1/disks/good")["size"] == MiB
        bad = c.get("/v1/quarantine")
        assert sorted(bad) == ["moved", "torn"]
        assert "outside the datastore" in bad["moved"]
        with pytest.raises(RemoteError) as err:
            c.get("/v1/disks/moved")
        assert err.value.remote_code == "VMDR-E0423"  # unknown, not written through the link
    assert (records / "quarantine" / "moved.json").exists()
    assert not (outside / "moved-flat.vmdk").exists()


MALFORMED_CONTROLS = [
    {"op": "begin", "initial": True, "resume_from": "soon"},
    {"op": "begin", "resume_from": -1},
    {"op": "begin", "evil": 1},
    {"op": "cut", "time": "yesterday"},
    {"op": "cut"},
    {"op": "cut", "time": 1.0, "kind": ["crash"]},
    {"op": "cut", "time": 1.0, "tag": "../../x"},
]


def test_a_malformed_control_frame_is_refused_with_a_code(pair: Pair) -> None:
    """Each of these was a 500 (a float or int conversion inside the receiver)."""
    good_begin = frames.Control({"op": "begin", "initial": True, "resume_from": 0})
    with pair.mt_client() as c:
        c.put("/v1/disks/d1", pair.disk("d1", "d1/d1-flat.vmdk", size=MiB, create=True))
        for control in MALFORMED_CONTROLS:
            items: list[frames.Item] = [frames.Control(control)] if control["op"] == "begin" else [
                good_begin, DiskInfo(MiB, 65536), DataRun(0, b"\x01" * 65536), Done(MiB),
                frames.Control(control)]  # fmt: skip
            with pytest.raises(RemoteError) as err:
                c.upload("/v1/disks/d1/changesets/initial", [stream([*items, frames.End()])])
            assert (err.value.status, err.value.remote_code) == (409, "VMDR-E0422"), control
        assert c.get("/v1/disks/d1/points") == []


def test_a_sender_gone_silent_frees_the_disk(pair_factory: Any) -> None:
    """A change set that begins and then goes quiet (a peer that vanished)
    is closed after the idle time: the disk is free for the resend, which is
    accepted. It used to stay busy for as long as the connection lived."""
    import threading

    pair = pair_factory(mt_args=["--stream-idle", "2"])
    with pair.mt_client() as c:
        c.put("/v1/disks/d1", pair.disk("d1", "d1/d1-flat.vmdk", size=MiB, create=True))
    items = changeset(b"\xab" * (256 << 10), MiB)
    head = stream(items[:3])  # begin, DiskInfo, a DataRun ... then nothing
    outcome: list[object] = []

    def silent_sender() -> None:
        def body() -> Any:
            yield head
            time.sleep(12)
            yield b""

        try:
            with pair.mt_client() as c:
                outcome.append(c.upload("/v1/disks/d1/changesets/initial", body()))
        except Exception as exc:
            outcome.append(exc)

    sender = threading.Thread(target=silent_sender, daemon=True)
    sender.start()
    with pair.mt_client() as c:
        deadline = time.monotonic() + 10
        while not c.get("/v1/disks/d1")["busy"]:  # it has begun
            assert time.monotonic() < deadline
            time.sleep(0.05)
        began = time.monotonic()
        while c.get("/v1/disks/d1")["busy"]:
            assert time.monotonic() - began < 8, "the disk is still held"
            time.sleep(0.1)
        answer = c.upload("/v1/disks/d1/changesets/initial", [stream(items)])
        assert answer["point"]["changeset"] == "initial"
    sender.join(20)
    assert outcome and isinstance(outcome[0], Exception)  # the silent one was cut off
