"""Reprotect prechecks, rule by rule: a healthy baseline passes with no
finding; each rule broken alone refuses with its own code and says how to fix
it; the recovery type is decided as the source documents say."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vmdr.model.diskmatch import CloudDisk
from vmdr.model.prechecks import (
    DiskFacts,
    MasterTargetFacts,
    PrecheckFailed,
    ProcessServerFacts,
    ReprotectRequest,
    VmFacts,
    check_reprotect,
)

GiB = 1 << 30
U1, U2 = "6000c291-0000-0000-0000-000000000001", "6000c291-0000-0000-0000-000000000002"

VM = VmFacts(
    name="web-01",
    vcenter="vc-1",
    disks=(
        DiskFacts("scsi0:0", 40 * GiB, "[vmfs-01] web/web.vmdk", "vmfs-01", "VMFS", U1),
        DiskFacts("scsi0:1", 10 * GiB, "[vmfs-01] web/web_1.vmdk", "vmfs-01", "VMFS", U2),
    ),
)
CLOUD = (CloudDisk("disk0", 40 * GiB, "scsi0:0", U1), CloudDisk("disk1", 10 * GiB, "scsi0:1", U2))
REQUEST = ReprotectRequest(
    vcenter="vc-1", configuration_server="cs-1", protected_by="cs-1", cloud_disks=CLOUD
)
MT = MasterTargetFacts(
    name="mt-01", host="esx-02", host_datastores=frozenset({"vmfs-01", "vsan-01"})
)
PS = ProcessServerFacts(name="ps-cloud")


def codes(
    vm: VmFacts = VM,
    req: ReprotectRequest = REQUEST,
    mt: MasterTargetFacts | None = MT,
    ps: ProcessServerFacts | None = PS,
) -> list[str]:
    return [f.code for f in check_reprotect(vm, req, mt, ps).findings]


def test_a_healthy_original_location_recovery_passes_without_findings() -> None:
    report = check_reprotect(VM, REQUEST, MT, PS)
    assert report.ok and report.findings == [] and report.mode == "OLR"
    assert report.matching is not None
    assert [
        (m.method, m.original.unit if m.original else None) for m in report.matching.matches
    ] == [("uuid", "scsi0:0"), ("uuid", "scsi0:1")]
    report.raise_if_failed()  # nothing to raise


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"vm": replace(VM, in_database=False)}, "VMDR-E0801"),
        ({"req": replace(REQUEST, protected_by="cs-old")}, "VMDR-E0802"),
        ({"req": replace(REQUEST, vcenter="vc-other")}, "VMDR-E0802"),
        ({"vm": replace(VM, snapshots=2)}, "VMDR-E0803"),
        ({"mt": replace(MT, host_datastores=frozenset({"vsan-01"}))}, "VMDR-E0804"),
        ({"vm": replace(VM, endpoint_kind="esx", endpoint_discovered=False)}, "VMDR-E0805"),
        ({"vm": replace(VM, guest="Microsoft Windows Server 2008 R2 SP1 (64-bit)")}, "VMDR-E0810"),
        ({"mt": replace(MT, enable_uuid=None)}, "VMDR-E0811"),
        ({"mt": replace(MT, snapshots=1)}, "VMDR-E0812"),
        ({"mt": replace(MT, powered_on=False)}, "VMDR-E0829"),
        ({"mt": replace(MT, storage_vmotioned=True)}, "VMDR-E0813"),
        ({"mt": replace(MT, retention_ready=False)}, "VMDR-E0814"),
        ({"mt": replace(MT, disks=59)}, "VMDR-E0815"),
        ({"ps": None}, "VMDR-E0816"),
        ({"ps": replace(PS, healthy=False)}, "VMDR-E0816"),
        ({"ps": replace(PS, site="primary")}, "VMDR-E0816"),
        ({"ps": replace(PS, reaches_master_target=False)}, "VMDR-E0817"),
        ({"mt": None}, "VMDR-E0818"),
        ({"mt": replace(MT, healthy=False)}, "VMDR-E0818"),
        ({"mt": replace(MT, vm_discovered=False)}, "VMDR-E0818"),
        ({"vm": replace(VM, exists=False), "req": replace(REQUEST, mode="olr")}, "VMDR-E0820"),
    ],
)
def test_each_rule_refuses_alone_with_its_code(change: dict[str, object], code: str) -> None:
    args: dict[str, object] = {"vm": VM, "req": REQUEST, "mt": MT, "ps": PS, **change}
    report = check_reprotect(args["vm"], args["req"], args["mt"], args["ps"])  # type: ignore[arg-type]
    assert [f.code for f in report.errors] == [code]
    (finding,) = report.errors
    assert finding.message and finding.fix  # says what and how
    with pytest.raises(PrecheckFailed) as err:
        report.raise_if_failed()
    assert err.value.code == code and finding.message in err.value.message


def test_the_snapshot_message_is_the_one_users_see() -> None:
    (finding,) = check_reprotect(replace(VM, snapshots=2), REQUEST, MT, PS).errors
    assert finding.message == "VM web-01 has 2 snapshots; reprotect cannot start."
    assert finding.fix == (
        "Remove them with `vmdr reprotect web-01 --remove-snapshots` or in vCenter."
    )


def test_remove_snapshots_turns_the_refusal_into_a_note() -> None:
    report = check_reprotect(
        replace(VM, snapshots=1), replace(REQUEST, remove_snapshots=True), MT, PS
    )
    assert report.ok and [(f.code, f.severity) for f in report.findings] == [("VMDR-I0803", "info")]


def test_all_failures_are_reported_at_once_and_the_first_code_is_raised() -> None:
    got = codes(
        vm=replace(VM, snapshots=1), mt=replace(MT, snapshots=3, storage_vmotioned=True), ps=None
    )
    assert got == ["VMDR-E0803", "VMDR-E0812", "VMDR-E0813", "VMDR-E0816"]


# --- deciding OLR or ALR ---------------------------------------------------------

ALR = replace(REQUEST, datastore="vmfs-01", datastore_type="VMFS")


def test_a_deleted_original_vm_means_alternate_location_recovery() -> None:
    report = check_reprotect(replace(VM, exists=False), ALR, MT, PS)
    assert report.mode == "ALR" and report.ok and report.matching is None


def test_the_user_can_force_alr_on_an_existing_vm() -> None:
    report = check_reprotect(VM, replace(ALR, mode="alr"), MT, PS)
    assert report.mode == "ALR" and report.ok


def test_snapshots_do_not_block_alr_the_original_is_not_touched() -> None:
    assert check_reprotect(replace(VM, snapshots=4), replace(ALR, mode="alr"), MT, PS).ok


def test_a_physical_server_fails_back_only_through_alr() -> None:
    phys = replace(VM, name="phys-01", kind="physical", vcenter=None)
    assert check_reprotect(phys, ALR, MT, PS).mode == "ALR"
    assert codes(vm=phys, req=replace(ALR, mode="olr")) == ["VMDR-E0809"]


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (replace(ALR, datastore=None), "VMDR-E0819"),
        (replace(ALR, datastore="nfs-01", datastore_type="NFS"), "VMDR-E0806"),
        (replace(ALR, datastore="vmfs-09", datastore_type="VMFS"), "VMDR-E0804"),
    ],
)
def test_alr_datastore_rules(req: ReprotectRequest, code: str) -> None:
    assert codes(vm=replace(VM, exists=False), req=req) == [code]


def test_vsan_is_allowed_for_alr() -> None:
    req = replace(ALR, datastore="vsan-01", datastore_type="vsan")
    assert check_reprotect(replace(VM, exists=False), req, MT, PS).ok


def test_rdm_disks_cannot_go_to_an_alternate_location() -> None:
    rdm = replace(VM.disks[1], backing="rdm-physical")
    vm = replace(VM, exists=False, disks=(VM.disks[0], rdm))
    report = check_reprotect(vm, ALR, MT, PS)
    assert [f.code for f in report.errors] == ["VMDR-E0807"]
    assert "scsi0:1" in report.errors[0].message


def test_olr_onto_rdm_or_vsan_needs_the_disks_to_exist() -> None:
    vsan = tuple(replace(d, datastore="vsan-01", datastore_type="vsan") for d in VM.disks)
    vm = replace(VM, disks=vsan)
    assert check_reprotect(vm, REQUEST, MT, PS).ok  # both disks exist: fine
    extra = (*CLOUD, CloudDisk("disk2", 5 * GiB, "scsi0:2", "6000c291-0000-0000-0000-000000000003"))
    report = check_reprotect(vm, replace(REQUEST, cloud_disks=extra), MT, PS)
    assert [f.code for f in report.errors] == ["VMDR-E0808"]
    assert "disk2" in report.errors[0].message


def test_without_enable_uuid_disks_are_matched_best_effort_with_a_warning() -> None:
    vm = replace(VM, enable_uuid=None)
    report = check_reprotect(vm, REQUEST, MT, PS)
    assert report.ok and report.mode == "OLR"
    (warning,) = report.findings
    assert (warning.code, warning.severity) == ("VMDR-W0821", "warning")
    assert report.matching is not None
    assert [m.method for m in report.matching.matches] == ["unit+capacity", "unit+capacity"]


def test_an_extra_disk_is_announced_loudly() -> None:
    extra = (*CLOUD, CloudDisk("disk2", 5 * GiB, "scsi0:2"))
    report = check_reprotect(VM, replace(REQUEST, cloud_disks=extra), MT, PS)
    assert report.ok
    (warning,) = [f for f in report.findings if f.severity == "warning"]
    assert "ADD a new disk" in warning.message


def test_an_unsupported_guest_is_recognised_in_its_usual_spellings() -> None:
    for guest in (
        "Windows Server 2008 R2 SP1",
        "windows server 2008 r2 (64-bit) sp1",
        "Microsoft Windows Server 2008 R2 Datacenter SP1",
    ):
        assert "VMDR-E0810" in codes(vm=replace(VM, guest=guest))
    for guest in ("Windows Server 2008 R2 (64-bit)", "Windows Server 2012 R2", "Debian 10"):
        assert "VMDR-E0810" not in codes(vm=replace(VM, guest=guest))


def test_the_machine_not_in_the_database_stops_the_other_checks() -> None:
    assert codes(vm=replace(VM, in_database=False), mt=None, ps=None) == ["VMDR-E0801"]


def test_a_report_is_plain_json() -> None:
    import json

    report = check_reprotect(replace(VM, snapshots=1), REQUEST, MT, PS).to_dict()
    assert json.loads(json.dumps(report))["findings"][0]["code"] == "VMDR-E0803"


def test_disks_attached_from_other_datastores_are_not_a_storage_vmotion() -> None:
    from vmdr.model.facts import storage_vmotioned

    assert not storage_vmotioned(["vmfs-01"], ["vmfs-01", "vsan-01"])  # failbacks attached
    assert storage_vmotioned(["vmfs-01"], ["vmfs-02"])  # its files moved
    assert storage_vmotioned(["vmfs-01", "nfs-01"], ["vmfs-01"])  # one of its disks moved
    assert not storage_vmotioned(None, ["vmfs-02"])  # not discovered at registration yet
