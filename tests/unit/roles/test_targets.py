"""Where the master target writes: an attached disk is the device its UUID
names at the moment it is opened, or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmdr.roles.byid import DeviceFolder, by_id_names
from vmdr.roles.datastores import DatastoreRoots
from vmdr.roles.targets import AttachedDisk, DeviceChanged, DeviceTooSmall, Targets

UUID = "6000C29d-e45f-8a3b-9c1d-2e3f4a5b6c7d"


def _targets(folder: Path) -> Targets:
    return Targets(DatastoreRoots({}), DeviceFolder(folder), wait=0.0)


def _disk(path: Path, size: int) -> Path:
    path.write_bytes(b"")
    with open(path, "r+b") as f:
        f.truncate(size)
    return path


def test_a_disk_swapped_between_look_up_and_open_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look-up found sdb; by the open, the UUID names another device."""
    folder = tmp_path / "by-id"
    folder.mkdir()
    first, second = _disk(tmp_path / "sdb", 4096), _disk(tmp_path / "sdc", 4096)
    (folder / by_id_names(UUID)[0]).symlink_to(second)
    targets = _targets(folder)
    monkeypatch.setattr(targets.devices, "find", lambda uuid, wait=0.0: first)
    with pytest.raises(DeviceChanged) as err:
        targets.open(AttachedDisk(UUID.lower()))
    assert err.value.code == "VMDR-E0429" and str(second) in err.value.message


def test_the_device_the_uuid_names_is_opened(tmp_path: Path) -> None:
    folder = tmp_path / "by-id"
    folder.mkdir()
    device = _disk(tmp_path / "sdb", 8192)
    (folder / by_id_names(UUID)[0]).symlink_to(device)
    targets = _targets(folder)
    with targets.open(AttachedDisk(UUID.lower())) as backend:
        assert backend.size() == 8192
    with pytest.raises(DeviceTooSmall):
        targets.prepare(AttachedDisk(UUID.lower()), 16384, create=True)
    assert device.stat().st_size == 8192  # never grown


def test_names_compare_requests_and_records_without_touching_a_disk(tmp_path: Path) -> None:
    from vmdr.roles.contracts import DiskSpec

    targets = _targets(tmp_path / "absent")
    spec = DiskSpec(device=UUID.replace("-", ""))
    assert targets.names(spec) == targets.names(AttachedDisk(UUID.lower()))
    assert targets.names(DiskSpec(datastore="ds1", path="a/a-flat.vmdk")) == {
        "datastore": "ds1", "path": "a/a-flat.vmdk"}  # fmt: skip
