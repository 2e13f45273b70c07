"""What the configuration server remembers about a protected item between the
steps of its operations (``ProtectedItem.settings``, a JSON column): one
typed model, so that a step reads ``settings.disks[0].blob`` rather than a
key it hopes is there, and a write with an unknown key or a wrong shape is
refused before it reaches the database.

The reports kept for the user (prechecks, proofs, the transfer plan) stay
free-form JSON: they are shown, not computed on."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from vmdr.model.dspath import DatastoreFile
from vmdr.model.errors import VmdrError

__all__ = ["DiskTarget", "ItemDisk", "ItemSettings", "LastSync", "SettingMissing", "TrialVm"]


class SettingMissing(VmdrError):
    code = "VMDR-E0521"
    http_status = 409
    msg = "the protected item has no {what} yet"
    fix = "Run the operation that records it first ({after})."


Report = dict[str, Any]
T = TypeVar("T")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ItemDisk(_Model):
    """One disk of the protected VM and its replica."""

    unit: int
    file: str  # on premises: "[datastore] vm/vm.vmdk"
    capacity: int
    uuid: str | None = None
    address: str  # "scsi0:1": how the cloud VM and the disk matching name it
    blob: str  # the page blob replica

    @property
    def datastore_file(self) -> DatastoreFile:
        return DatastoreFile.parse(self.file)


class DiskTarget(_Model):
    """Where failback writes one disk (the original VMDK, or the new VM's),
    and its UUID once attached to the master target's VM."""

    unit: int
    file: str
    device: str | None = None

    @property
    def datastore_file(self) -> DatastoreFile:
        return DatastoreFile.parse(self.file)


class TrialVm(_Model):
    """A test failover's VM in the cloud, or a failback drill's scratch VM."""

    vm: str
    point: int | None = None
    datastore: str | None = None  # a drill's
    direction: str | None = None


class LastSync(_Model):
    step: str
    bytes: dict[str, int]  # per disk unit: written or zeroed
    read: dict[str, int] = {}  # per disk unit: bytes read from the disks
    how: dict[str, str] = {}  # per disk unit: "changed" (CBT's areas) or "differential"
    consistency: str = "crash"  # the snapshot's: "app" when the guest was quiesced
    job: str | None = None  # the job that synced: its point may carry that label


class ItemSettings(_Model):
    disks: list[ItemDisk] = []
    vm: str | None = None  # the protected VM's name
    vcenter: str | None = None
    onprem_vm: str | None = None  # after a failback to a new VM (ALR): that one
    test_failover: TrialVm | None = None
    failback_targets: list[DiskTarget] = []
    failback_vm: str | None = None
    reprotect: Report | None = None  # the reprotect prechecks (mode, targets, findings)
    reprotect_plan: Report | None = None
    reprotect_sent: dict[str, int] | None = None
    failback_proof: Report | None = None
    cloud_proof: Report | None = None
    restore_proof: Report | None = None
    replication_error: Report | None = None
    replicated_at: float | None = None
    point_job: str | None = None  # the job whose point was taken last
    last_sync: LastSync | None = None
    change_ids: dict[str, str] = {}  # per disk unit: the changeId its replica is equal at
    group_presync_bytes: int | None = None
    failed_over_at_point: int | None = None

    # What a step needs that an earlier operation recorded: refused with a
    # code, not a KeyError, when it was never recorded.
    @property
    def vm_name(self) -> str:
        return self._need(self.vm, "VM name", "enable protection")

    @property
    def onprem_vm_name(self) -> str:
        """The on-premises VM now: the failed-back one after ALR, else the original."""
        return self.onprem_vm or self.vm_name

    @property
    def vcenter_id(self) -> str:
        return self._need(self.vcenter, "vCenter", "enable protection")

    @property
    def reprotect_report(self) -> Report:
        return self._need(self.reprotect, "reprotect prechecks", "reprotect to on-premises")

    @property
    def failback_vm_name(self) -> str:
        return self._need(self.failback_vm, "failback VM", "reprotect to on-premises")

    @property
    def test(self) -> TrialVm:
        return self._need(self.test_failover, "test VM", "test failover or failback drill")

    @staticmethod
    def _need(value: T | None, what: str, after: str) -> T:
        if value is None:
            raise SettingMissing(what=what, after=after)
        return value

    @classmethod
    def of(cls, stored: dict[str, Any] | None) -> ItemSettings:
        return cls.model_validate(stored or {})

    def changed(self, **changes: Any) -> ItemSettings:
        """A copy with ``changes`` (models or plain JSON), validated whole."""
        unknown = set(changes) - set(type(self).model_fields)
        if unknown:
            raise TypeError(f"not an item setting: {', '.join(sorted(unknown))}")
        merged = self.model_dump(mode="json", exclude_none=True)
        for key, value in changes.items():
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json", exclude_none=True)
            elif isinstance(value, list):
                value = [v.model_dump(mode="json", exclude_none=True)
                         if isinstance(v, BaseModel) else v for v in value]  # fmt: skip
            merged[key] = value
        return type(self).model_validate(merged)

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
