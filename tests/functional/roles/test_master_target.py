"""The master target's edges: corrupted frames, a missing retention drive."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from vmdr.blocks.messages import DataRun, DiskInfo, Done
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
        c.put("/v1/disks/d1", {"datastore": "ds1", "path": "d1/d1-flat.vmdk",
                               "size": MiB, "create": True})  # fmt: skip
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
            c.put("/v1/disks/d1", {"datastore": "ds1", "path": "d1/d1-flat.vmdk",
                                   "size": MiB, "create": True})  # fmt: skip
        assert err.value.remote_code == "VMDR-E0401"
        usage = c.get("/v1/retention")
        assert usage["ready"] is False and usage["problem"]["code"] == "VMDR-E0401"
    os.mkdir(pair.retention)
    with pair.mt_client() as c:
        c.put("/v1/disks/d1", {"datastore": "ds1", "path": "d1/d1-flat.vmdk",
                               "size": MiB, "create": True})  # fmt: skip
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
