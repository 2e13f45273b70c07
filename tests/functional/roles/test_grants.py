"""Capabilities, not paths: the process server reads and the master target
writes only what the configuration server assigned (issue 20, #4 and #5).

Before grants, the process server's token was enough to have it copy any
local file (a password file, the configuration server's keys) to the master
target, with error codes that told whether a file existed; and the master
target's token was enough to write into any disk under its datastores,
other replicas included, through materialise."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.functional.roles.test_master_target import changeset, stream
from vmdr.lab.pair import Pair
from vmdr.transport.client import RemoteError

MiB = 1 << 20


def refused(call: object, *args: object) -> RemoteError:
    with pytest.raises(RemoteError) as err:
        call(*args)  # type: ignore[operator]
    return err.value


def test_the_process_server_reads_only_an_assigned_source(pair: Pair, tmp_path: Path) -> None:
    secret = tmp_path / "secret.key"
    secret.write_bytes(b"the configuration server's key")
    assigned = tmp_path / "disk.img"
    assigned.write_bytes(b"\x07" * MiB)
    with pair.ps_client() as c:
        # No grant, a grant for another source, a grant for another target:
        # refused alike, for a file that exists and one that does not.
        for body in (
            {"id": "r1", "source": str(secret), "datastore": "ds1", "path": "r1/r1-flat.vmdk"},
            {
                "id": "r1",
                "source": str(tmp_path / "nope"),
                "datastore": "ds1",
                "path": "r1/r1-flat.vmdk",
            },
            {**pair.replication("r1", str(assigned), "r1/r1-flat.vmdk"), "source": str(secret)},
            {**pair.replication("r1", str(assigned), "r1/r1-flat.vmdk"), "path": "r2/r2-flat.vmdk"},
            {**pair.replication("r1", str(assigned), "r1/r1-flat.vmdk"), "id": "r2"},
        ):
            err = refused(c.post, "/v1/replications", body)
            assert (err.status, err.remote_code) == (403, "VMDR-E0360"), body
        assert c.get("/v1/replications") == []
        # What the configuration server assigned is replicated.
        c.post("/v1/replications", pair.replication("r1", str(assigned), "r1/r1-flat.vmdk"))
    pair.wait("r1", lambda s: s["initial_done"])
    assert (pair.ds / "r1/r1-flat.vmdk").read_bytes() == b"\x07" * MiB
    assert not list(pair.ds.rglob("*secret*"))


def test_the_master_target_writes_only_an_assigned_disk(pair: Pair) -> None:
    with pair.mt_client() as c:
        c.put("/v1/disks/d1", pair.disk("d1", "d1/d1-flat.vmdk", size=MiB, create=True))
        c.upload("/v1/disks/d1/changesets/initial", [stream(changeset(b"\xab" * MiB, MiB))])
        # Another disk's file, with no grant, or with d1's grant under another id.
        for disk, body in (
            ("d2", {"datastore": "ds1", "path": "d1/d1-flat.vmdk", "size": MiB}),
            ("d2", pair.disk("d1", "d1/d1-flat.vmdk", size=MiB)),
            ("d2", {**pair.disk("d2", "d2/d2-flat.vmdk", size=MiB), "path": "d1/d1-flat.vmdk"}),
        ):
            err = refused(c.put, f"/v1/disks/{disk}", body)
            assert (err.status, err.remote_code) == (403, "VMDR-E0360"), body
        # Granted, but the file is already d1's: refused too.
        err = refused(c.put, "/v1/disks/d2", pair.disk("d2", "d1/d1-flat.vmdk", size=MiB))
        assert (err.status, err.remote_code) == (409, "VMDR-E0424")
        c.put("/v1/disks/d2", pair.disk("d2", "d2/d2-flat.vmdk", size=MiB, create=True))
        c.upload("/v1/disks/d2/changesets/initial", [stream(changeset(b"\x02" * MiB, MiB))])

        # Materialise: only with a grant for that disk, point and file ...
        url = "/v1/disks/d1/materialise"
        for body in (
            {"point": "latest", "datastore": "ds1", "path": "out/a-flat.vmdk"},
            {**pair.materialise("d1", "latest", "out/a-flat.vmdk"), "path": "out/b-flat.vmdk"},
            {**pair.materialise("d2", "latest", "out/a-flat.vmdk")},
        ):
            err = refused(c.post, url, body)
            assert (err.status, err.remote_code) == (403, "VMDR-E0360"), body
        # ... never into a replica (its own or another's), even when granted.
        for path in ("d1/d1-flat.vmdk", "d2/d2-flat.vmdk"):
            err = refused(c.post, url, pair.materialise("d1", "latest", path))
            assert (err.status, err.remote_code) == (409, "VMDR-E0424"), path
        assert (pair.ds / "d2/d2-flat.vmdk").read_bytes() == b"\x02" * MiB
        assert not (pair.ds / "out").exists()
        c.post(url, pair.materialise("d1", "latest", "out/a-flat.vmdk"))
    assert (pair.ds / "out/a-flat.vmdk").read_bytes() == b"\xab" * MiB


def test_an_old_grant_cannot_reopen_a_released_disk_nor_a_materialise_run_twice(
    pair: Pair,
) -> None:
    """After a failback the master target forgets the disk, and the file is
    the production VM's again: the grant it was written under (kept by the
    process server) must not open it a second time. A new assignment, with
    a newer grant, may."""
    old = pair.disk("d1", "d1/d1-flat.vmdk", size=MiB, create=True)
    with pair.mt_client() as c:
        c.put("/v1/disks/d1", old)
        c.put("/v1/disks/d1", old)  # the sender's retry: the same grant, the same disk
        c.upload("/v1/disks/d1/changesets/initial", [stream(changeset(b"\xab" * MiB, MiB))])
        once = pair.materialise("d1", "latest", "out/a-flat.vmdk")
        c.post("/v1/disks/d1/materialise", once)
        err = refused(c.post, "/v1/disks/d1/materialise", once)
        assert (err.status, err.remote_code) == (403, "VMDR-E0360") and "used" in err.message
        c.delete("/v1/disks/d1")
        err = refused(c.put, "/v1/disks/d1", old)
        assert (err.status, err.remote_code) == (403, "VMDR-E0360") and "replay" in err.message
    pair.mt.stop()  # the refusal outlives a restart
    pair.mt.start()
    with pair.mt_client() as c:
        err = refused(c.put, "/v1/disks/d1", old)
        assert err.remote_code == "VMDR-E0360"
        c.put("/v1/disks/d1", pair.disk("d1", "d1/d1-flat.vmdk", size=MiB))  # assigned again
    assert (pair.ds / "d1/d1-flat.vmdk").read_bytes() == b"\xab" * MiB
