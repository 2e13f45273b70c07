"""Reprotect prechecks: every rule of the source documents, checked before
anything is changed. Pure logic over facts the configuration server gathers
(its database, the roles' heartbeats); unit-tested rule by rule.

Each rule has its own stable code, says what is wrong in the user's words, and
how to fix it. ``check_reprotect`` runs them all (it never stops at the first)
and decides the recovery type: **original location recovery** (OLR) when the
original VM still exists, **alternate location recovery** (ALR) when it was
deleted, when the machine is a physical server, or when the user asks for it.

==========  =================================================================
code        rule (source documents)
==========  =================================================================
VMDR-E0801  the machine must exist in the configuration server's database
VMDR-E0802  fail back only to the original vCenter and configuration server
VMDR-E0803  snapshots on the on-premises VM make reprotect fail
VMDR-E0804  OLR: the master target's ESX host must reach the VM's datastore
VMDR-E0805  a VM on an ESX host without vCenter: that host must be discovered
VMDR-E0806  ALR: only VMFS or vSAN datastores
VMDR-E0807  ALR: RDM disks cannot be failed back to an alternate location
VMDR-E0808  OLR onto vSAN or RDM only where the disks exist and are attached
VMDR-E0809  a physical server fails back only as a VMware VM, through ALR
VMDR-E0810  Windows Server 2008 R2 SP1 cannot be failed back
VMDR-E0811  master target: disk.enableUUID=TRUE on its own VM
VMDR-E0812  master target: no snapshots on its VM
VMDR-E0813  master target: not storage-vMotioned since registration
VMDR-E0814  master target: a formatted retention drive
VMDR-E0815  master target: at most 60 disks
VMDR-E0816  a process server must run on the cloud side
VMDR-E0817  the process server must reach the master target (VPN/ExpressRoute)
VMDR-E0818  the master target must be registered, healthy and its VM discovered
VMDR-E0819  ALR needs a datastore chosen for the new VM
VMDR-E0820  OLR asked for, but the original VM was deleted
VMDR-E0829  master target: its VM powered on (attached disks appear to a running guest)
VMDR-W0821  disk.enableUUID not TRUE: disks matched best effort (a warning)
==========  =================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from vmdr.model.diskmatch import MatchPlan, OriginalDisk, match_disks
from vmdr.model.errors import VmdrError
from vmdr.model.facts import (
    DiskFacts,
    MasterTargetFacts,
    ProcessServerFacts,
    ReprotectRequest,
    VmFacts,
)

__all__ = [
    "DiskFacts",
    "Finding",
    "MasterTargetFacts",
    "PrecheckFailed",
    "PrecheckReport",
    "ProcessServerFacts",
    "ReprotectRequest",
    "VmFacts",
    "check_reprotect",
]

MAX_MASTER_TARGET_DISKS = 60
ALR_DATASTORE_TYPES = frozenset({"vmfs", "vsan"})
_UNSUPPORTED_GUEST = re.compile(r"windows\s+server\s+2008\s+r2.*\bsp\s*1\b|2008\s*r2\s+sp1", re.I)
Mode = Literal["OLR", "ALR"]


class PrecheckFailed(VmdrError):
    """Raised with the first refusing rule's code; ``findings`` lists all."""

    code = "VMDR-E0800"
    http_status = 409
    msg = "{summary}"
    fix = "{remedies}"


@dataclass(frozen=True)
class Finding:
    code: str
    rule: str
    message: str
    fix: str = ""
    severity: Literal["error", "warning", "info"] = "error"

    def to_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass
class PrecheckReport:
    vm: str
    mode: Mode
    findings: list[Finding] = field(default_factory=list)
    matching: MatchPlan | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_if_failed(self) -> None:
        if self.ok:
            return
        raise PrecheckFailed(
            summary="; ".join(f"{f.code}: {f.message}" for f in self.errors),
            remedies=" | ".join(f.fix for f in self.errors if f.fix),
            code=self.errors[0].code,  # the first refusing rule's own stable code
            findings=self.errors,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "vm": self.vm,
            "mode": self.mode,
            "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings],
        }


def _decide_mode(vm: VmFacts, req: ReprotectRequest) -> Mode:
    """What the user asked for; else OLR while the original VM exists.

    An explicit ``olr`` stays OLR even where it cannot work (a physical
    server, a deleted VM), so the refusal names the reason instead of
    silently switching to a full copy."""
    if req.mode == "olr":
        return "OLR"
    if req.mode == "alr" or vm.kind == "physical" or not vm.exists:
        return "ALR"
    return "OLR"


def _machine_rules(vm: VmFacts, req: ReprotectRequest, mode: Mode) -> list[Finding]:
    out: list[Finding] = []
    if not vm.in_database:
        out.append(
            Finding(
                "VMDR-E0801",
                "machine in database",
                f"{vm.name} is not in this configuration server's database, so it cannot be "
                "failed back.",
                "Restore the configuration server's backup that protected it, or discover its "
                "vCenter again (`vmdr vcenters list`, then discover).",
            )
        )
        return out  # nothing else can be judged
    if req.protected_by != req.configuration_server or (
        vm.kind == "vm" and vm.vcenter is not None and req.vcenter not in (None, vm.vcenter)
    ):
        out.append(
            Finding(
                "VMDR-E0802",
                "original vCenter and configuration server",
                f"{vm.name} was protected from another vCenter or configuration server; failback "
                "goes only to the original ones.",
                "Fail back through the original configuration server and vCenter (restore the "
                "configuration server from its backup, with the same address).",
            )
        )
    if vm.kind == "physical" and req.mode == "olr":
        out.append(
            Finding(
                "VMDR-E0809",
                "physical servers through ALR",
                f"{vm.name} is a physical server: it fails back only as a new VMware VM "
                "(alternate location recovery), never onto the physical machine.",
                f"Run `vmdr reprotect {vm.name} --alr --datastore DATASTORE`.",
            )
        )
    if req.mode == "olr" and vm.kind == "vm" and not vm.exists:
        out.append(
            Finding(
                "VMDR-E0820",
                "OLR needs the original VM",
                f"the original VM {vm.name} was deleted, so it cannot be recovered to its "
                "original location.",
                f"Use alternate location recovery: `vmdr reprotect {vm.name} --alr "
                "--datastore DATASTORE`; the VM is created on the master target's ESX host.",
            )
        )
    if _UNSUPPORTED_GUEST.search(vm.guest):
        out.append(
            Finding(
                "VMDR-E0810",
                "supported guest",
                f"{vm.name} runs Windows Server 2008 R2 SP1, which cannot be failed back.",
                "Upgrade the guest in the cloud first, or keep it running in the cloud.",
            )
        )
    if mode == "OLR" and vm.snapshots and not req.remove_snapshots:
        plural = "s" if vm.snapshots != 1 else ""
        out.append(
            Finding(
                "VMDR-E0803",
                "no snapshots",
                f"VM {vm.name} has {vm.snapshots} snapshot{plural}; reprotect cannot start.",
                f"Remove them with `vmdr reprotect {vm.name} --remove-snapshots` or in vCenter.",
            )
        )
    elif mode == "OLR" and vm.snapshots:
        out.append(
            Finding(
                "VMDR-I0803",
                "no snapshots",
                f"the {vm.snapshots} snapshot(s) of {vm.name} will be removed before the resync.",
                severity="info",
            )
        )
    if vm.endpoint_kind == "esx" and not vm.endpoint_discovered:
        out.append(
            Finding(
                "VMDR-E0805",
                "ESX host discovered",
                f"{vm.name} is on an ESX host that no vCenter manages, and that host has not "
                "been discovered.",
                "Add the ESX host by address and credentials (kind esx) and discover it "
                "before reprotect.",
            )
        )
    return out


def _master_target_rules(mt: MasterTargetFacts | None, added_disks: int) -> list[Finding]:
    if mt is None or not mt.registered or not mt.healthy or not mt.vm_discovered:
        name = mt.name if mt else "(none)"
        why = (
            "none is registered"
            if mt is None or not mt.registered
            else "it sends no heartbeat"
            if not mt.healthy
            else "its VM has not been discovered"
        )
        return [
            Finding(
                "VMDR-E0818",
                "master target ready",
                f"master target {name} cannot be used: {why}.",
                "Install and register a master target on-premises (`vmdr serve master-target`), "
                "name its VM at registration, and discover its vCenter.",
            )
        ]
    out: list[Finding] = []
    if mt.enable_uuid is not True:
        out.append(
            Finding(
                "VMDR-E0811",
                "master target disk.enableUUID",
                f"the master target's VM ({mt.name}) does not have disk.enableUUID=TRUE: "
                "without it Linux sees no UUID for the disks attached to it and the master "
                "target cannot find the ones it must write.",
                "Power it off, set disk.enableUUID=TRUE in its advanced settings, power it on, "
                "and discover again.",
            )
        )
    if mt.powered_on is False:
        out.append(
            Finding(
                "VMDR-E0829",
                "master target running",
                f"the master target's VM ({mt.name}) is powered off: the disks attached to it "
                "for a failback appear only to a running guest.",
                "Power the master target's VM on in vCenter (its service starts with it), and "
                "discover again.",
            )
        )
    if mt.snapshots:
        out.append(
            Finding(
                "VMDR-E0812",
                "master target without snapshots",
                f"the master target's VM ({mt.name}) has {mt.snapshots} snapshot(s).",
                "Remove the master target VM's snapshots in vCenter.",
            )
        )
    if mt.storage_vmotioned:
        out.append(
            Finding(
                "VMDR-E0813",
                "master target not storage-vMotioned",
                f"the master target's VM ({mt.name}) moved to another datastore since it was "
                "registered: the disks attached to it for a failback would not be made "
                "available to it.",
                "Move it back with storage vMotion, or deploy and register a new master target.",
            )
        )
    if not mt.retention_ready:
        out.append(
            Finding(
                "VMDR-E0814",
                "retention drive",
                f"master target {mt.name} has no formatted, writable retention drive.",
                "Give it a formatted retention volume (`vmdr serve master-target --retention "
                "DIR`) and restart it.",
            )
        )
    if mt.disks + added_disks > MAX_MASTER_TARGET_DISKS:
        out.append(
            Finding(
                "VMDR-E0815",
                "at most 60 master target disks",
                f"master target {mt.name} has {mt.disks} disks (its own and those attached "
                f"for failbacks under way); {added_disks} more would exceed "
                f"{MAX_MASTER_TARGET_DISKS}.",
                "Use another master target, or fail back fewer machines at once.",
            )
        )
    return out


def _process_server_rules(ps: ProcessServerFacts | None, mt_name: str) -> list[Finding]:
    if ps is None or not ps.healthy or ps.site != "recovery":
        return [
            Finding(
                "VMDR-E0816",
                "cloud process server",
                "no healthy process server runs on the cloud side.",
                "Deploy a process server in the cloud (`vmdr serve process-server`), register "
                "it, and wait for its heartbeat.",
            )
        ]
    if ps.reaches_master_target is False:
        return [
            Finding(
                "VMDR-E0817",
                "process server reaches master target",
                f"process server {ps.name} cannot reach master target {mt_name}.",
                "Check the site-to-site VPN or ExpressRoute and the master target's port.",
            )
        ]
    return []


def _storage_rules(
    vm: VmFacts,
    mt: MasterTargetFacts | None,
    req: ReprotectRequest,
    mode: Mode,
    matching: MatchPlan | None,
) -> list[Finding]:
    out: list[Finding] = []
    reach = mt.host_datastores if mt else frozenset()
    host = mt.host if mt and mt.host else "the master target's host"
    if mode == "ALR":
        if not req.datastore:
            out.append(
                Finding(
                    "VMDR-E0819",
                    "ALR datastore",
                    f"alternate location recovery of {vm.name} needs a datastore for the new VM.",
                    f"Choose one the master target's host ({host}) mounts: "
                    f"`vmdr reprotect {vm.name} --datastore NAME`.",
                )
            )
        elif (req.datastore_type or "").lower() not in ALR_DATASTORE_TYPES:
            out.append(
                Finding(
                    "VMDR-E0806",
                    "ALR datastore type",
                    f"datastore {req.datastore} is {req.datastore_type or 'of unknown type'}; "
                    "alternate location recovery writes only to VMFS or vSAN datastores.",
                    "Choose a VMFS or vSAN datastore the master target's host mounts.",
                )
            )
        elif mt is not None and req.datastore not in reach:
            out.append(
                Finding(
                    "VMDR-E0804",
                    "datastore reachable",
                    f"the master target's host ({host}) does not mount datastore {req.datastore}.",
                    "Choose a datastore it mounts, or mount this one on it.",
                )
            )
        rdms = [d.address for d in vm.disks if d.backing.startswith("rdm")]
        if rdms:
            out.append(
                Finding(
                    "VMDR-E0807",
                    "no RDM through ALR",
                    f"{vm.name} has RDM disks ({', '.join(rdms)}), which cannot be failed back "
                    "to an alternate location.",
                    "Fail back to the original VM (original location recovery), where the RDM "
                    "disks exist and are attached.",
                )
            )
        return out
    unreachable = sorted(
        {d.datastore for d in vm.disks if d.datastore and d.datastore not in reach}
    )
    if mt is not None and unreachable:
        out.append(
            Finding(
                "VMDR-E0804",
                "datastore reachable",
                f"the master target's host ({host}) cannot reach datastore "
                f"{', '.join(unreachable)}, where {vm.name}'s disks are.",
                "Mount that datastore on the master target's ESX host, use a master target on "
                f"a host that mounts it, or delete {vm.name} to fail back to an alternate "
                "location instead.",
            )
        )
    if matching is not None:
        special = {
            d.address
            for d in vm.disks
            if d.backing.startswith("rdm") or (d.datastore_type or "").lower() == "vsan"
        }
        missing = [m.cloud.name for m in matching.new_disks]
        if special and missing:
            out.append(
                Finding(
                    "VMDR-E0808",
                    "vSAN/RDM disks exist",
                    f"{vm.name} is on vSAN or RDM storage, where failback can only write disks "
                    f"that exist and are attached; no original disk matches {', '.join(missing)}.",
                    "Attach disks of those sizes to the VM (or fail back to a VMFS alternate "
                    "location).",
                )
            )
        if vm.enable_uuid is not True or matching.warnings:
            text = " ".join(matching.warnings) or (
                f"{vm.name} does not have disk.enableUUID=TRUE; its disks were matched by "
                "position and size."
            )
            out.append(
                Finding(
                    "VMDR-W0821",
                    "disk matching",
                    text,
                    "Set disk.enableUUID=TRUE on the VM so later failbacks match disks exactly.",
                    severity="warning",
                )
            )
    return out


def check_reprotect(
    vm: VmFacts,
    request: ReprotectRequest,
    master_target: MasterTargetFacts | None,
    process_server: ProcessServerFacts | None,
) -> PrecheckReport:
    """Every precheck of reprotect (cloud → on-premises), all of them at once."""
    mode = _decide_mode(vm, request)
    report = PrecheckReport(vm=vm.name, mode=mode)
    report.findings += _machine_rules(vm, request, mode)
    if not vm.in_database:
        return report
    if mode == "OLR":
        originals = [OriginalDisk(d.address, d.capacity, d.file, d.uuid) for d in vm.disks]
        report.matching = match_disks(vm.name, vm.enable_uuid, list(request.cloud_disks), originals)
    added = len(request.cloud_disks) or len(vm.disks)
    report.findings += _master_target_rules(master_target, added)
    report.findings += _process_server_rules(
        process_server, master_target.name if master_target else "(none)"
    )
    report.findings += _storage_rules(vm, master_target, request, mode, report.matching)
    return report
