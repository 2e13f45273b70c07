"""Keeping the inventory database in step with discovery.

``store_discovery`` makes the rows of one vCenter (or ESX host) match what
discovery found: hosts and datastores by managed-object id, machines by
managed-object id with their disks replaced. A machine that disappeared from
the vCenter keeps its row, marked ``vanished_at`` (the failback workflow
needs it: deleting the VM turns OLR into ALR); one that comes back is
unmarked. Idempotent: discovering twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vmdr.control.db.models import Datastore, Disk, Host, Machine, MasterTarget, VCenter
from vmdr.providers.vsphere.discovery import Inventory

__all__ = ["store_discovery"]


def _link_master_targets(s: Session, vcenter: VCenter, inv: Inventory) -> None:
    """Tie each master target to the VM it runs in, once that VM is found.

    The datastores of that VM at the first sighting are kept: the source
    documents forbid storage vMotion of the master target after registration,
    and a later discovery that finds it elsewhere lets reprotect refuse."""
    vms = {vm.name: vm for vm in inv.vms}
    for mt in s.scalars(select(MasterTarget).where(MasterTarget.vm_name.is_not(None))):
        vm = vms.get(mt.vm_name or "")
        if vm is None:
            continue
        machine = s.scalars(
            select(Machine).where(Machine.vcenter_id == vcenter.id, Machine.moref == vm.moref)
        ).first()
        if machine is None:
            continue
        mt.machine_id, mt.host_id = machine.id, machine.host_id
        if mt.vm_datastores_at_registration is None:
            mt.vm_datastores_at_registration = list(vm.datastores)


def store_discovery(s: Session, vcenter: VCenter, inv: Inventory) -> dict[str, Any]:
    hosts = {h.moref: h for h in s.scalars(select(Host).where(Host.vcenter_id == vcenter.id))}
    host_ids: dict[str, str] = {}
    for found in inv.hosts:
        host = hosts.pop(found["moref"], None) or Host(vcenter_id=vcenter.id, moref=found["moref"])
        host.name, host.cluster = found["name"], found["cluster"]
        s.add(host)
        s.flush()
        host_ids[host.name] = host.id
    for old_host in hosts.values():
        s.delete(old_host)

    stores = {
        d.moref: d for d in s.scalars(select(Datastore).where(Datastore.vcenter_id == vcenter.id))
    }
    store_ids: dict[str, str] = {}
    for found in inv.datastores:
        ds = stores.pop(found["moref"], None) or Datastore(
            vcenter_id=vcenter.id, moref=found["moref"]
        )
        ds.name, ds.type = found["name"], found["type"] or ""
        ds.host_ids = sorted(host_ids[h] for h in found["hosts"] if h in host_ids)
        ds.rdm_supported = bool(found.get("rdm_supported", False))
        s.add(ds)
        s.flush()
        store_ids[ds.name] = ds.id
    for old_store in stores.values():
        s.delete(old_store)

    machines = {
        m.moref: m
        for m in s.scalars(select(Machine).where(Machine.vcenter_id == vcenter.id))
        if m.moref
    }
    for vm in inv.vms:
        row = machines.pop(vm.moref, None) or Machine(vcenter_id=vcenter.id, moref=vm.moref)
        row.name, row.kind, row.guest_os = vm.name, "vm", vm.guest_id
        row.host_id = host_ids.get(vm.host or "")
        row.enable_uuid, row.snapshots = vm.enable_uuid, vm.snapshots
        row.power_state, row.guest_full_name = vm.power_state, vm.guest_full_name
        row.annotation, row.datastores = vm.annotation, list(vm.datastores)
        row.vanished_at = None
        # Disks are updated in place by unit: replacing the list would insert
        # the new rows before deleting the old and trip (machine, unit) unique.
        by_unit = {d.unit: d for d in row.disks}
        for d in vm.disks:
            disk = by_unit.pop(d.unit, None) or Disk(unit=d.unit)
            disk.uuid, disk.capacity, disk.path = d.uuid, d.capacity, d.file
            disk.datastore_id = store_ids.get(d.datastore or "")
            disk.address, disk.controller, disk.backing = d.address, d.controller, d.backing
            if disk not in row.disks:
                row.disks.append(disk)
        for extra in by_unit.values():
            row.disks.remove(extra)
        s.add(row)
    for gone in machines.values():
        if gone.vanished_at is None:
            gone.vanished_at = dt.datetime.now(dt.UTC)
    vcenter.discovered_at = dt.datetime.now(dt.UTC)
    vcenter.topology = {
        "api_type": inv.api_type,
        "datacenters": list(inv.datacenters),
        "clusters": [{"name": c["name"], "hosts": c["hosts"]} for c in inv.clusters],
    }
    s.flush()
    _link_master_targets(s, vcenter, inv)
    return {"hosts": len(inv.hosts), "datastores": len(inv.datastores), "machines": len(inv.vms)}
