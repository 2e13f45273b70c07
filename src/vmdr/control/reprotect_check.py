"""Reprotect prechecks fed with what the configuration server knows.

``model.prechecks`` holds the rules; this module gathers their facts from the
database (discovery's inventory, the roles' registrations and heartbeats) and
answers ``POST /v1/prechecks/reprotect``:

    {machine, master_target?, process_server?, mode: auto|olr|alr,
     datastore?, remove_snapshots?}  →  the report (mode, findings, disk matches)

The cloud disks are the machine's protected disks. Until the machine has a
protected item (issue 8's workflows), they are taken from its discovered
disks, as they were when protection started; the disk matching and every
other rule are the ones reprotect itself will run.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from vmdr.control.db.models import (
    Datastore,
    Host,
    Machine,
    MasterTarget,
    ProcessServer,
    Site,
    VCenter,
)
from vmdr.control.nodes import is_healthy
from vmdr.model.diskmatch import CloudDisk
from vmdr.model.facts import (
    DiskFacts,
    MasterTargetFacts,
    ProcessServerFacts,
    ReprotectRequest,
    VmFacts,
    storage_vmotioned,
)
from vmdr.model.prechecks import PrecheckReport, check_reprotect

__all__ = ["ReprotectCheck", "run_reprotect_check"]

NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}$"


class ReprotectCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")
    machine: str = Field(pattern=NAME, description="machine name or id")
    master_target: str | None = Field(default=None, pattern=NAME)
    process_server: str | None = Field(default=None, pattern=NAME)
    mode: Literal["auto", "olr", "alr"] = "auto"
    datastore: str | None = Field(default=None, pattern=NAME)
    remove_snapshots: bool = False


def _one(s: Session, model: Any, name: str | None) -> Any:
    """The named role, else the only one registered (None when ambiguous)."""
    if name is not None:
        return s.scalars(select(model).where(or_(model.name == name, model.id == name))).first()
    rows = list(s.scalars(select(model)))
    return rows[0] if len(rows) == 1 else None


def _vm_facts(s: Session, m: Machine, stores: dict[str, Datastore]) -> VmFacts:
    vc = s.get(VCenter, m.vcenter_id) if m.vcenter_id else None
    disks = []
    for d in m.disks:
        ds = stores.get(d.datastore_id or "")
        disks.append(
            DiskFacts(
                address=d.address or f"disk{d.unit}",
                capacity=d.capacity,
                file=d.path,
                datastore=ds.name if ds else None,
                datastore_type=ds.type if ds else None,
                uuid=d.uuid,
                backing=d.backing,
            )
        )
    return VmFacts(
        name=m.name,
        kind="physical" if m.kind == "physical" else "vm",
        exists=m.vanished_at is None,
        vcenter=m.vcenter_id,
        endpoint_kind="esx" if vc is not None and vc.kind == "esx" else "vcenter",
        endpoint_discovered=vc is not None and vc.discovered_at is not None,
        snapshots=m.snapshots,
        enable_uuid=m.enable_uuid,
        guest=" ".join(x for x in (m.guest_full_name, m.guest_os, m.annotation) if x),
        disks=tuple(disks),
    )


def _mt_facts(s: Session, mt: MasterTarget | None, stores: dict[str, Datastore]) -> Any:
    if mt is None:
        return None
    vm = s.get(Machine, mt.machine_id) if mt.machine_id else None
    then = mt.vm_datastores_at_registration
    health = mt.health or {}
    host = mt.host_id or (vm.host_id if vm else None)
    host_row = s.get(Host, host) if host else None
    return MasterTargetFacts(
        name=mt.name,
        healthy=is_healthy(mt),
        vm_discovered=vm is not None and vm.vanished_at is None,
        enable_uuid=vm.enable_uuid if vm else None,
        snapshots=vm.snapshots if vm else 0,
        powered_on=vm.power_state == "poweredOn" if vm and vm.power_state else None,
        storage_vmotioned=vm is not None and storage_vmotioned(then, vm.datastores),
        disks=len(vm.disks) if vm else 0,
        retention_ready=bool((health.get("retention") or {}).get("ready")),
        host=host_row.name if host_row else None,
        host_datastores=frozenset(d.name for d in stores.values() if host in (d.host_ids or [])),
    )  # fmt: skip


def _ps_facts(s: Session, ps: ProcessServer | None, mt: MasterTarget | None) -> Any:
    if ps is None:
        return None
    site = s.get(Site, ps.site_id) if ps.site_id else None
    probe = (ps.health or {}).get("master_target") or {}
    reaches: bool | None = None
    if mt is not None and probe.get("url") == mt.url:
        reaches = bool(probe.get("reachable"))
    elif mt is not None and probe:
        reaches = False  # it replicates to another master target
    return ProcessServerFacts(
        name=ps.name,
        healthy=is_healthy(ps),
        # A process server registered without a site is taken as the cloud
        # side's: the only place reprotect uses one.
        site=site.role if site else "recovery",
        reaches_master_target=reaches,
    )


def run_reprotect_check(
    s: Session, req: ReprotectCheck, server_id: str, cloud_disks: list[CloudDisk] | None = None
) -> PrecheckReport:
    """The report for one machine; ``cloud_disks`` are its protected item's
    (else the discovered disks stand for them)."""
    machine = s.scalars(
        select(Machine)
        .where(or_(Machine.name == req.machine, Machine.id == req.machine))
        .order_by(Machine.vanished_at.is_not(None))  # a live VM of that name first
    ).first()
    if machine is None:
        return check_reprotect(
            VmFacts(name=req.machine, in_database=False),
            ReprotectRequest(vcenter=None, configuration_server=server_id, protected_by=server_id),
            None,
            None,
        )
    stores = {d.id: d for d in s.scalars(select(Datastore))}
    vm = _vm_facts(s, machine, stores)
    mt = _one(s, MasterTarget, req.master_target)
    ps = _one(s, ProcessServer, req.process_server)
    chosen = next((d for d in stores.values() if d.name == req.datastore), None)
    request = ReprotectRequest(
        vcenter=machine.vcenter_id,
        configuration_server=server_id,
        protected_by=server_id,
        cloud_disks=tuple(
            cloud_disks
            if cloud_disks is not None
            else [
                CloudDisk(f"disk{d.unit}", d.capacity, d.address or f"disk{d.unit}", d.uuid)
                for d in machine.disks
            ]
        ),
        mode=req.mode,
        datastore=req.datastore,
        datastore_type=chosen.type if chosen else None,
        remove_snapshots=req.remove_snapshots,
    )
    return check_reprotect(vm, request, _mt_facts(s, mt, stores), _ps_facts(s, ps, mt))
