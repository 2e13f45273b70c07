"""Names parsed once: vSphere's datastore paths (the names failback and the
master target derive from them are the ones vSphere itself gives), and a
failback replication's identity."""

from __future__ import annotations

import pytest

from vmdr.model.dspath import DatastoreFile
from vmdr.model.errors import UsageError


@pytest.mark.parametrize(
    ("text", "datastore", "path", "flat"),
    [
        ("[vmfs-01] web-01/web-01.vmdk", "vmfs-01", "web-01/web-01.vmdk",
         "web-01/web-01-flat.vmdk"),
        ("[vsanDatastore] 5c1d-aa/db_1.vmdk", "vsanDatastore", "5c1d-aa/db_1.vmdk",
         "5c1d-aa/db_1-flat.vmdk"),
        ("[data store 2]  app/app-flat.vmdk", "data store 2", "app/app-flat.vmdk",
         "app/app-flat.vmdk"),
    ],
)  # fmt: skip
def test_a_datastore_path_parses_prints_and_names_its_flat_extent(
    text: str, datastore: str, path: str, flat: str
) -> None:
    where = DatastoreFile.parse(text)
    assert (where.datastore, where.path, where.flat) == (datastore, path, flat)
    assert DatastoreFile.parse(str(where)) == where


@pytest.mark.parametrize("text", ["web-01/web-01.vmdk", "[] x.vmdk", "[ds]", "[ds]   ", ""])
def test_anything_else_is_refused_with_its_code(text: str) -> None:
    with pytest.raises(UsageError) as err:
        DatastoreFile.parse(text)
    assert err.value.code == "VMDR-E0001"


def test_a_new_vms_disks_are_named_as_vsphere_names_them() -> None:
    assert [str(DatastoreFile.of_disk("vmfs-02", "db-01", i)) for i in range(3)] == [
        "[vmfs-02] db-01/db-01.vmdk", "[vmfs-02] db-01/db-01_1.vmdk",
        "[vmfs-02] db-01/db-01_2.vmdk",
    ]  # fmt: skip


def test_a_replication_identity_prints_and_parses_back_and_nothing_else_is_one() -> None:
    from vmdr.model.ids import ReplicationId, is_id

    rid = ReplicationId("3f2a-9c", 12)
    assert str(rid) == "fb-3f2a-9c-d12" and is_id(str(rid))
    assert ReplicationId.parse(str(rid)) == rid
    assert ReplicationId.parse("fb-a-d1-d2") == ReplicationId("a-d1", 2)
    for other in ("rep-1", "fb--d1", "fb-a-dx", "fb-a", "fb-../x-d1"):
        assert ReplicationId.parse(other) is None
