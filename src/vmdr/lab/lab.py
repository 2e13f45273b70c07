"""``vmdr lab up | status | down``: the embedded two-site lab on one machine.

``up`` checks every dependency and every requested port *before* it starts
anything, starts the services one by one, and if any of them fails it stops the
ones already started: a failed ``up`` leaves nothing running. ``down`` stops by
the pids recorded in ``lab.json`` (checked against each process's start time).
``status`` reports each service as up, down (its process is gone: crashed or
killed) or unreachable (its process lives but its port does not answer).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmdr.lab import process
from vmdr.lab.roles import (
    ConfigurationServerService,
    MasterTargetService,
    ProcessServerService,
    register_lab,
    write_dataplane,
)
from vmdr.lab.services import (
    HOST,
    SITE_SERVICES,
    LabContext,
    Service,
)
from vmdr.lab.state import (
    LabState,
    ServiceRecord,
    load_credentials,
    save_credentials,
    save_inventory,
)
from vmdr.model.errors import LabAlreadyRunning, LabNotRunning, PortInUse, UsageError
from vmdr.transport.tls import ensure_ca

log = logging.getLogger(__name__)

DEFAULT_DIR = Path(".vmdr-lab")
# In start order: the sites first, then the replication roles that use them.
ALL_SERVICES: tuple[Service, ...] = (
    *SITE_SERVICES,
    ConfigurationServerService(),
    MasterTargetService(),
    ProcessServerService(),
)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # up | down | unreachable
    address: str
    url: str
    pid: int
    log: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "address": self.address,
            "url": self.url,
            "pid": self.pid,
            "log": self.log,
        }


def service_status(record: ServiceRecord) -> ServiceStatus:
    if not process.is_alive(record.process):
        state = "down"
    elif process.port_open(record.host, record.port):
        state = "up"
    else:
        state = "unreachable"
    return ServiceStatus(
        name=record.name,
        state=state,
        address=f"{record.host}:{record.port}",
        url=record.url,
        pid=record.process.pid,
        log=record.log,
    )


class Lab:
    def __init__(self, directory: Path = DEFAULT_DIR) -> None:
        self.directory = directory.resolve()

    # -- status ---------------------------------------------------------------
    def state(self) -> LabState | None:
        return LabState.load(self.directory)

    def status(self) -> list[ServiceStatus]:
        state = self.state()
        if state is None:
            raise LabNotRunning(directory=str(self.directory))
        return [service_status(s) for s in state.services]

    def credentials(self) -> dict[str, Any]:
        return load_credentials(self.directory)

    # -- up ---------------------------------------------------------------------
    def up(self, ports: dict[str, int] | None = None, populate: bool = True) -> LabState:
        ports = dict(ports or {})
        unknown = set(ports) - {s.name for s in ALL_SERVICES}
        if unknown:
            raise UsageError(detail=f"unknown lab service(s): {', '.join(sorted(unknown))}")
        existing = self.state()
        if existing is not None:
            alive = [s.name for s in existing.services if process.is_alive(s.process)]
            if alive:
                raise LabAlreadyRunning(directory=str(self.directory), services=", ".join(alive))
        # Check everything first: a missing program or a busy port starts nothing.
        for service in ALL_SERVICES:
            service.check_dependencies()
        for name, port in ports.items():
            if not process.port_free(HOST, port):
                raise PortInUse(port=port, service=name)
        chosen = {s.name: ports.get(s.name) or process.free_port(HOST) for s in ALL_SERVICES}

        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "logs").mkdir(exist_ok=True)
        creds_path = self.directory / "credentials.json"
        creds = load_credentials(self.directory) if creds_path.exists() else {}
        ctx = LabContext(self.directory, ensure_ca(self.directory / "pki"), creds)
        state = LabState(self.directory)
        try:
            for service in ALL_SERVICES:
                record = self._start(service, ctx, chosen[service.name])
                ctx.started[record.name] = record
                state.services.append(record)
                save_credentials(self.directory, ctx.credentials)
                state.save()
            if populate:
                self._populate(state, ctx)
                state.service("configuration-server").details.update(register_lab(ctx))
                state.save()
        except BaseException:
            self._stop_all(state)
            raise
        return state

    def restart(self, name: str, kill: bool = False, fresh: bool = False) -> ServiceRecord:
        """Stop one service (``kill``: SIGKILL, as a crash would) and start it
        again on the same port with the same state folder (``fresh``: an empty
        one, the old folder kept beside it — a replaced server)."""
        state = self.state()
        if state is None:
            raise LabNotRunning(directory=str(self.directory))
        service = next(s for s in ALL_SERVICES if s.name == name)
        old = state.service(name)
        if kill:
            process.kill(old.process)
        else:
            process.stop(old.process)
        # A killed process's listening socket can outlive it by a moment; the
        # new one must find the port free, not mistake the old socket for itself.
        deadline = time.monotonic() + 10
        while not process.port_free(HOST, old.port):
            if time.monotonic() > deadline:
                raise PortInUse(port=old.port, service=name)
            time.sleep(0.05)
        ctx = LabContext(self.directory, ensure_ca(self.directory / "pki"), self.credentials())
        ctx.started = {s.name: s for s in state.services}
        if fresh and old.details.get("state"):
            folder = Path(old.details["state"])
            folder.rename(folder.with_name(f"{folder.name}.replaced-{time.time_ns()}"))
        record = self._start(service, ctx, old.port)
        record.details = {**old.details, **record.details}
        state.services = [record if s.name == name else s for s in state.services]
        save_credentials(self.directory, ctx.credentials)
        state.save()
        return record

    def write_dataplane(self) -> Path:
        """(Re)write the configuration server's data-plane file (after a restore
        onto a fresh server, whose folder does not have it)."""
        state = self.state()
        if state is None:
            raise LabNotRunning(directory=str(self.directory))
        ctx = LabContext(self.directory, ensure_ca(self.directory / "pki"), self.credentials())
        ctx.started = {s.name: s for s in state.services}
        return write_dataplane(ctx)

    def _start(self, service: Service, ctx: LabContext, port: int) -> ServiceRecord:
        log.info("starting service=%s port=%d", service.name, port)
        return service.start(ctx, port)

    def _populate(self, state: LabState, ctx: LabContext) -> None:
        from vmdr.lab.populate import populate
        from vmdr.providers.vsphere.session import session

        vcenter, esx = state.service("vcenter"), state.service("esx")
        dirs = {
            d["name"]: Path(d["path"])
            for record in (vcenter, esx)
            for d in record.details["topology"]["datastores"]
        }
        with (
            session(vcenter_endpoint(self.directory, state)) as vc_si,
            session(vcenter_endpoint(self.directory, state, "esx")) as esx_si,
        ):
            inventory = populate({"vcenter": vc_si, "esx": esx_si}, self.directory, dirs)
        inventory["topology"] = vcenter.details["topology"]
        inventory["esx_topology"] = esx.details["topology"]
        save_inventory(self.directory, inventory)

    # -- down -----------------------------------------------------------------------
    def down(self, purge: bool = False) -> list[str]:
        state = self.state()
        if state is None:
            if purge and self.directory.exists():
                shutil.rmtree(self.directory)
            raise LabNotRunning(directory=str(self.directory))
        stopped = self._stop_all(state)
        (self.directory / "lab.json").unlink(missing_ok=True)
        if purge:
            shutil.rmtree(self.directory)
        return stopped

    def _stop_all(self, state: LabState) -> list[str]:
        stopped = []
        cloud = self.directory / "cloud-vms"
        if cloud.exists():  # the cloud VMs' workloads run as processes of their own
            from vmdr.providers.azure.lab_compute import LabCompute

            LabCompute(cloud).stop_all()
        for record in reversed(state.services):
            if process.stop(record.process):
                stopped.append(record.name)
        return stopped


def vcenter_endpoint(directory: Path, state: LabState | None = None, name: str = "vcenter") -> Any:
    """The lab vCenter's (or, with ``name="esx"``, the standalone ESX host's)
    address and credentials, for pyVmomi."""
    from vmdr.providers.vsphere.session import Endpoint

    state = state or LabState.load(directory)
    if state is None:
        raise LabNotRunning(directory=str(directory))
    record = state.service(name)
    creds = load_credentials(directory)[name]
    return Endpoint(
        url=record.url,
        user=creds["user"],
        password=creds["password"],
        ca_file=Path(record.details["ca"]),
    )
