"""The by-id resolver: a VMDK UUID as vSphere shows it → the device Linux
made for it, on folders laid out as real appliances have them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from vmdr.roles.byid import (
    DeviceAmbiguous,
    DeviceFolder,
    DeviceNotFound,
    by_id_names,
    uuid_hex,
    uuid_of_name,
)

UUID = "6000C29d-e45f-8a3b-9c1d-2e3f4a5b6c7d"  # backing.uuid as the vSphere API gives it
HEX = "6000c29de45f8a3b9c1d2e3f4a5b6c7d"

# /dev/disk/by-id of a Linux VM with disk.enableUUID=TRUE on a PVSCSI
# controller (sda: system disk, sdb: a hot-added VMDK), beside a SATA CD-ROM
# and an NVMe disk, named as systemd's 60-persistent-storage.rules names them
# (wwn-0x$ID_WWN, scsi-$ID_SERIAL, scsi-S$ID_VENDOR_$ID_MODEL_$ID_SCSI_SERIAL).
APPLIANCE = {
    "ata-VMware_Virtual_SATA_CDRW_Drive_00000000000000000001": "../../sr0",
    "scsi-36000c2958a3e2bb4f0c1d2e3f4a5b6c7": "../../sda",
    "scsi-36000c2958a3e2bb4f0c1d2e3f4a5b6c7-part1": "../../sda1",
    "wwn-0x6000c2958a3e2bb4f0c1d2e3f4a5b6c7": "../../sda",
    "wwn-0x6000c2958a3e2bb4f0c1d2e3f4a5b6c7-part1": "../../sda1",
    f"scsi-3{HEX}": "../../sdb",
    f"scsi-SVMware_Virtual_disk_{HEX}": "../../sdb",
    f"wwn-0x{HEX}": "../../sdb",
    "nvme-VMware_Virtual_NVMe_Disk_VMware_NVME_0000": "../../nvme0n1",
    "nvme-eui.36000c2900000000": "../../nvme0n1",
}


def folder(tmp_path: Path, links: dict[str, str]) -> DeviceFolder:
    dev = tmp_path / "dev"
    by_id = dev / "disk" / "by-id"
    by_id.mkdir(parents=True)
    for name, target in links.items():
        (by_id / name).symlink_to(target)
        (by_id / target).resolve().touch()
    return DeviceFolder(by_id)


def test_a_vsphere_uuid_maps_to_the_names_udev_gives_it() -> None:
    assert uuid_hex(UUID) == HEX
    assert uuid_hex("60 00 C2 9d e4 5f 8a 3b-9c 1d 2e 3f 4a 5b 6c 7d") == HEX  # vmdk ddb.uuid
    assert by_id_names(UUID) == [f"wwn-0x{HEX}", f"scsi-3{HEX}", f"scsi-SVMware_Virtual_disk_{HEX}"]
    for name in by_id_names(UUID):
        assert uuid_of_name(name) == HEX
    assert uuid_of_name(f"scsi-SVMware_Virtual_disk_{HEX.upper()}") == HEX
    for other in ("wwn-0x" + HEX + "-part1", "nvme-eui.36000c2900000000", f"ata-{HEX}",
                  f"scsi-2{HEX}", "scsi-36000c29"):  # fmt: skip
        assert uuid_of_name(other) is None, other
    for bad in ("", "6000C29d", "not-a-uuid-at-all-not-a-uuid-at-all", HEX + "00"):
        with pytest.raises(ValueError):
            uuid_hex(bad)


def test_the_hot_added_disk_is_found_and_never_a_partition(tmp_path: Path) -> None:
    devices = folder(tmp_path, APPLIANCE)
    assert devices.find(UUID) == tmp_path / "dev" / "sdb"
    assert devices.find("6000c295-8a3e-2bb4-f0c1-d2e3f4a5b6c7") == tmp_path / "dev" / "sda"


def test_a_disk_not_attached_or_without_enable_uuid_is_not_found_in_time(tmp_path: Path) -> None:
    # Without disk.enableUUID the guest has no identifier: no scsi-3/wwn names.
    no_uuid = {"ata-VMware_Virtual_SATA_CDRW_Drive_00000000000000000001": "../../sr0"}
    devices = folder(tmp_path, no_uuid)
    started = time.monotonic()
    with pytest.raises(DeviceNotFound) as err:
        devices.find(UUID, wait=0.3, poll=0.05)
    assert time.monotonic() - started >= 0.3
    assert err.value.code == "VMDR-E0426" and "disk.enableUUID=TRUE" in err.value.fix
    with pytest.raises(DeviceNotFound):
        DeviceFolder(tmp_path / "no-such-folder").find(UUID)


def test_a_disk_that_appears_while_waiting_is_found(tmp_path: Path) -> None:
    devices = folder(tmp_path, {})
    (tmp_path / "dev" / "sdc").touch()

    def attach() -> None:  # udev adds the link a moment after the attach
        time.sleep(0.2)
        (devices.folder / f"wwn-0x{HEX}").symlink_to("../../sdc")

    threading.Thread(target=attach).start()
    assert devices.find(UUID, wait=5.0, poll=0.05) == tmp_path / "dev" / "sdc"


def test_one_uuid_on_two_devices_is_refused(tmp_path: Path) -> None:
    """A copied VMDK attached beside its original: writing either could be
    writing the wrong disk."""
    devices = folder(tmp_path, {f"wwn-0x{HEX}": "../../sdb", f"scsi-3{HEX}": "../../sdc"})
    with pytest.raises(DeviceAmbiguous) as err:
        devices.find(UUID)
    assert err.value.code == "VMDR-E0427" and "sdb" in err.value.message
    assert "sdc" in err.value.message


def test_a_link_left_by_a_detached_disk_is_not_a_device(tmp_path: Path) -> None:
    devices = folder(tmp_path, {})
    (devices.folder / f"wwn-0x{HEX}").symlink_to("../../sdz")  # sdz is gone
    with pytest.raises(DeviceNotFound):
        devices.find(UUID)
