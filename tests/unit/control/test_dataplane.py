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
