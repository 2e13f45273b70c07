"""Protected items in the steps' database, as an earlier operation left them,
and a step run as the job engine runs it, its progress kept."""

from __future__ import annotations

from typing import Any

from vmdr.control.db.models import Machine, ProtectedItem
from vmdr.control.jobs import JobKind, StepContext
from vmdr.control.workflows.context import Workflows
from vmdr.model.lifecycle import Direction, Site, State

BLOB = "pageblob://acct/vmdr-replicas/{item}-disk{unit}"


def item(wf: Workflows, mode: str = "OLR", disks: int = 2, **settings: Any) -> str:
    from vmdr.control.db.models import MasterTarget

    with wf.sessions() as s:
        if s.query(MasterTarget).count() == 0:
            master_target_on(wf, "esx-01")
    with wf.sessions.begin() as s:
        machine = Machine(name="web-01")
        s.add(machine)
        s.flush()
        row = ProtectedItem(machine_id=machine.id, state=State.PROTECTED,
                            active_site=Site.RECOVERY, direction=Direction.RECOVERY_TO_PRIMARY,
                            settings={})  # fmt: skip
        s.add(row)
        s.flush()
        ident = row.id
    suffix = ["", "_1", "_2"]
    defaults: dict[str, Any] = dict(
        vm="web-01", vcenter="vc-1", reprotect={"mode": mode},
        disks=[{"unit": u, "file": f"[vmfs-01] web-01/web-01{suffix[u]}.vmdk", "capacity": 1 << 20,
                "address": f"scsi0:{u}", "blob": BLOB.format(item=ident, unit=u)}
               for u in range(disks)],
        failback_targets=[{"unit": u, "file": f"[vmfs-02] web-01/web-01{suffix[u]}.vmdk"}
                          for u in range(disks)],
    )  # fmt: skip
    wf.update_settings(ident, **{**defaults, **settings})
    return ident


def master_target_on(wf: Workflows, host: str) -> None:
    """The master target (VM mt-01) runs on ``host``."""
    from sqlalchemy import select

    from vmdr.control.db.models import Host, MasterTarget, Site, VCenter

    with wf.sessions.begin() as s:
        vc = s.scalars(select(VCenter)).first()
        if vc is None:
            site = Site(name="on-premises", role="primary")
            s.add(site)
            s.flush()
            vc = VCenter(site_id=site.id, name="vc", url="https://vc/sdk", user="u",
                         secret_enc=b"x")  # fmt: skip
            s.add(vc)
            s.flush()
        esx = Host(vcenter_id=vc.id, name=host, moref=f"host-{host}")
        s.add(esx)
        s.flush()
        mt = s.scalars(select(MasterTarget)).first()
        if mt is None:
            s.add(MasterTarget(name="mt", url="https://mt:9443", token_digest="0" * 64,
                               host_id=esx.id, vm_name="mt-01"))  # fmt: skip
        else:
            mt.host_id = esx.id


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str | None]] = []

    def progress(self, job_id: str, step: str, done_bytes: int, message: str | None) -> None:
        self.seen.append((step, done_bytes, message))


def run(kind: JobKind, step: str, params: dict[str, Any], job: str = "job-12345678") -> Events:
    events = Events()
    fn = dict(kind.steps)[step]
    fn(StepContext(job, params, events))
    return events
