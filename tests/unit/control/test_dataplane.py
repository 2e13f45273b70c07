"""The data-plane file, typed: read as written, and refused whole with its
code (naming each wrong key) when it is malformed or has a key vmdr does not
know, rather than a KeyError in the middle of a job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmdr.control.dataplane import DataPlane, DataPlaneMalformed

PLANE = {
    "datastores": {"vmfs-01": "/vmfs/volumes/vmfs-01"},
    "storage_account": "acct",
    "process_server": {"url": "https://ps.example:9444", "ca": "/ca.pem",
                       "token_file": "/ps.token"},
    "dns": {"server": "127.0.0.1", "port": 5353, "zone": "example.com.", "key_name": "vmdr.",
            "secret_file": "/tsig.key"},
    "replication_interval": 60,
}  # fmt: skip


def write(tmp_path: Path, plane: object) -> Path:
    (tmp_path / "dataplane.json").write_text(json.dumps(plane))
    return tmp_path


def test_the_file_reads_typed_with_its_defaults(tmp_path: Path) -> None:
    plane = DataPlane.load(write(tmp_path, PLANE))
    assert plane.datastores == {"vmfs-01": Path("/vmfs/volumes/vmfs-01")}
    assert plane.process_server is not None and plane.process_server.ca == Path("/ca.pem")
    assert plane.dns is not None and (plane.dns.port, plane.dns.algorithm) == (5353, "hmac-sha256")
    assert (plane.replication_interval, plane.container, plane.master_target) == (
        60, "vmdr-replicas", None)  # fmt: skip
    assert plane.path == tmp_path / "dataplane.json"
    assert DataPlane.load(tmp_path / "nothing-here").storage_account is None
    empty = {"dns": {}, "cloud_compute": "", "container": None, "master_target": {}}
    plane = DataPlane.load(write(tmp_path, {**PLANE, **empty}))
    assert (plane.dns, plane.cloud_compute, plane.container) == (None, None, "vmdr-replicas")


@pytest.mark.parametrize(
    ("plane", "named"),
    [
        ({**PLANE, "replication_intervall": 30}, "replication_intervall"),
        ({**PLANE, "replication_interval": -1}, "replication_interval"),
        ({**PLANE, "process_server": {"url": "http://ps:1", "ca": "/c", "token_file": "/t"}},
         "process_server.url"),
        ({**PLANE, "dns": {"server": "x"}}, "dns.zone"),
    ],
)  # fmt: skip
def test_a_malformed_file_is_refused_whole_naming_each_wrong_key(
    tmp_path: Path, plane: dict[str, object], named: str
) -> None:
    with pytest.raises(DataPlaneMalformed) as err:
        DataPlane.load(write(tmp_path, plane))
    assert err.value.code == "VMDR-E0561" and named in err.value.message


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dataplane.json").write_text("{not json")
    with pytest.raises(DataPlaneMalformed):
        DataPlane.load(tmp_path)


def test_the_cloud_compute_is_chosen_by_its_driver(tmp_path: Path) -> None:
    """Which compute service runs is the file's setting; the workflows get
    the interface (``CloudCompute``) either way."""
    from vmdr.providers.azure.azure_compute import AzureCompute
    from vmdr.providers.azure.lab_compute import LabCompute

    lab = {**PLANE, "cloud_compute": {"driver": "lab", "folder": str(tmp_path / "cloud")}}
    plane = DataPlane.load(write(tmp_path, lab))
    assert isinstance(plane.compute(), LabCompute)
    assert plane.describe()["cloud_compute"]["driver"] == "lab"
    # A bare folder, as files said before the setting had a driver: the lab's.
    legacy = DataPlane.load(write(tmp_path, {**PLANE, "cloud_compute": str(tmp_path / "c")}))
    assert isinstance(legacy.compute(), LabCompute)
    azure = {"driver": "azure", "subscription_id": "00000000-0000-0000-0000-000000000000",
             "resource_group": "dr", "location": "westeurope"}  # fmt: skip
    plane = DataPlane.load(write(tmp_path, {**PLANE, "cloud_compute": azure}))
    compute = plane.compute()
    assert isinstance(compute, AzureCompute) and compute.resource_group == "dr"
    assert plane.describe()["cloud_compute"] == {
        "driver": "azure", "where": "resource group 'dr' (westeurope)"}  # fmt: skip
    wrong = [({"driver": "gcp"}, "cloud_compute"),
             ({"driver": "azure", "resource_group": "dr"}, "subscription_id")]  # fmt: skip
    for bad, named in wrong:
        with pytest.raises(DataPlaneMalformed) as err:
            DataPlane.load(write(tmp_path, {**PLANE, "cloud_compute": bad}))
        assert named in err.value.message


def test_an_azure_vm_refuses_to_say_what_it_wrote_rather_than_answer_nothing() -> None:
    """Its managed disks are not the replica blobs: an empty answer would fail
    back stale data, so the question is refused with a code (issue 22)."""
    from vmdr.providers.azure.azure_compute import AzureCompute
    from vmdr.providers.azure.errors import CloudWritesUnknown

    class NoCredential:
        def get_token(self, *scopes: str, **kwargs: object) -> object:
            raise AssertionError("no call to Azure is made")

    compute = AzureCompute("sub", "dr", "westeurope", credential=NoCredential())  # type: ignore[arg-type]
    with pytest.raises(CloudWritesUnknown) as err:
        compute.written_extents("web-01", 0, "pageblob://acct/c/b", 1 << 20)
    assert err.value.code == "VMDR-E0714" and "managed disks" in err.value.fix
