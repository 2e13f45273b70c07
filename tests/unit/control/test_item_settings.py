"""A protected item's settings, typed: what a step reads has a shape, a
write with an unknown key or a wrong shape is refused before it is stored,
and a setting an earlier operation never recorded is refused with a code."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vmdr.control.db.item_settings import (
    DiskTarget,
    ItemDisk,
    ItemSettings,
    SettingMissing,
    TrialVm,
)

DISK = {"unit": 0, "file": "[vmfs-01] web-01/web-01.vmdk", "capacity": 1 << 20,
        "uuid": None, "address": "scsi0:0", "blob": "pageblob://acct/c/web-01-d0"}  # fmt: skip


def test_changes_are_validated_whole_and_stored_as_plain_json() -> None:
    settings = ItemSettings.of({"disks": [DISK], "vm": "web-01", "vcenter": "vc-1"})
    assert settings.disks[0].datastore_file.datastore == "vmfs-01"
    changed = settings.changed(
        failback_targets=[DiskTarget(unit=0, file="[vmfs-02] web-01/web-01.vmdk")],
        test_failover=TrialVm(vm="web-01-test", point=3),
    )
    stored = changed.stored()
    assert stored["failback_targets"] == [{"unit": 0, "file": "[vmfs-02] web-01/web-01.vmdk"}]
    assert stored["test_failover"] == {"vm": "web-01-test", "point": 3}
    assert ItemSettings.of(stored) == changed
    assert "test_failover" not in changed.changed(test_failover=None).stored()
    assert settings.disks == [ItemDisk(**DISK)]  # the original is not changed


def test_an_unknown_key_or_a_wrong_shape_is_refused() -> None:
    settings = ItemSettings.of({})
    with pytest.raises(TypeError, match="not an item setting: disk"):
        settings.changed(disk=[DISK])
    with pytest.raises(ValidationError):
        settings.changed(disks=[{**DISK, "capacity": "big"}])
    with pytest.raises(ValidationError):
        settings.changed(test_failover={"point": 1})  # a test VM has a name
    with pytest.raises(ValidationError):
        ItemSettings.of({"vm": "x", "favourite": 1})


def test_a_setting_never_recorded_is_refused_with_its_code() -> None:
    settings = ItemSettings.of({"vm": "web-01"})
    assert settings.vm_name == "web-01" and settings.onprem_vm_name == "web-01"
    assert settings.changed(onprem_vm="web-01-failback").onprem_vm_name == "web-01-failback"
    for read in (lambda: settings.vcenter_id, lambda: settings.reprotect_report,
                 lambda: settings.failback_vm_name, lambda: settings.test):  # fmt: skip
        with pytest.raises(SettingMissing) as err:
            read()
        assert err.value.code == "VMDR-E0521" and err.value.http_status == 409
