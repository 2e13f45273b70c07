"""How the configuration server's workflows reach the data plane.

The workflows never move bytes inside an HTTP handler; their job steps hand
backend URLs to the block engine or to the replication roles. This file says
where those are (``<state>/dataplane.json``, written by the operator or by
``vmdr lab up``)::

    {
      "datastores": {"vmfs-01": "/vmfs/volumes/vmfs-01", ...},
      "storage_account": "vmdrlab",
      "container": "vmdr-replicas",
      "cloud_compute": "/var/lib/vmdr/lab-cloud",
      "process_server": {"url": "https://...", "ca": "ca.pem", "token_file": "ps.token"},
      "master_target": {"url": "https://...", "ca": "ca.pem", "token_file": "mt.token"}
    }

- ``datastores``: where the on-premises datastores are mounted for reading,
  used by the cloud-bound direction (protect, reprotect to the cloud): in this
  version the configuration server's jobs play the on-premises process server
  for that direction, reading VMDK extents and writing page blobs.
- ``storage_account``/``container``: the cloud disks (page blobs).
- ``cloud_compute``: the lab's cloud compute folder (no Azure compute
  emulator exists; docs/azure.md).
- ``process_server``/``master_target``: the roles the failback direction uses
  (cloud process server → on-premises master target), with a token each.

Paths are confined the way the master target confines them
(``roles.datastores``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from vmdr.model.dspath import DatastoreFile
from vmdr.model.errors import VmdrError
from vmdr.roles.clients import MasterTargetClient, ProcessServerClient
from vmdr.roles.datastores import DatastorePath, DatastoreRoots
from vmdr.transport.client import ServiceClient

__all__ = ["DataPlane", "DataPlaneMissing", "RoleAccess"]

FILE = "dataplane.json"


class DataPlaneMissing(VmdrError):
    code = "VMDR-E0560"
    http_status = 409
    msg = "the configuration server does not know {what} ({path})"
    fix = (
        "Describe the data plane in {path} (datastores, storage account, cloud compute, "
        "process server and master target; docs/workflows.md) and restart the server."
    )


C = TypeVar("C", bound=ServiceClient)


@dataclass(frozen=True)
class RoleAccess:
    url: str
    ca: Path
    token_file: Path  # read when a client is made, not each time the file is loaded

    def client(self, name: str, kind: type[C], timeout: float = 120.0) -> C:
        token = self.token_file.read_text().strip()
        return kind(name, self.url, self.ca, token, timeout=timeout)


@dataclass
class DataPlane:
    path: Path
    datastores: dict[str, Path] = field(default_factory=dict)
    storage_account: str | None = None
    container: str = "vmdr-replicas"
    cloud_compute: Path | None = None
    process_server: RoleAccess | None = None
    master_target: RoleAccess | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the file as written

    @classmethod
    def load(cls, state_dir: Path) -> DataPlane:
        path = state_dir / FILE
        if not path.exists():
            return cls(path)
        raw: dict[str, Any] = json.loads(path.read_text())

        def role(key: str) -> RoleAccess | None:
            spec = raw.get(key)
            if not spec:
                return None
            return RoleAccess(spec["url"], Path(spec["ca"]), Path(spec["token_file"]))

        return cls(
            path=path,
            datastores={k: Path(v) for k, v in (raw.get("datastores") or {}).items()},
            storage_account=raw.get("storage_account"),
            container=raw.get("container") or "vmdr-replicas",
            cloud_compute=Path(raw["cloud_compute"]) if raw.get("cloud_compute") else None,
            process_server=role("process_server"),
            master_target=role("master_target"),
            options=raw,
        )

    def raw(self) -> dict[str, Any]:
        """The file as written (for sections read elsewhere: dns, intervals)."""
        return self.options

    def _need(self, value: Any, what: str) -> Any:
        if not value:
            raise DataPlaneMissing(what=what, path=str(self.path))
        return value

    def source_disk(self, vmdk: str) -> DatastorePath:
        """The flat extent of an on-premises VMDK (``[ds] folder/x.vmdk``)."""
        roots = DatastoreRoots(self._need(self.datastores, "the on-premises datastores"))
        where = DatastoreFile.parse(vmdk)
        return roots.resolve(where.datastore, where.flat)

    def blob_url(self, item: str, unit: int) -> str:
        account = self._need(self.storage_account, "the cloud storage account")
        return f"pageblob://{account}/{self.container}/{item}-disk{unit}"

    def compute(self) -> Any:
        from vmdr.providers.azure.lab_compute import LabCompute

        return LabCompute(self._need(self.cloud_compute, "the cloud compute"))

    def ps(self) -> ProcessServerClient:
        access: RoleAccess = self._need(self.process_server, "the cloud process server")
        return access.client("process server", ProcessServerClient)

    def mt(self) -> MasterTargetClient:
        access: RoleAccess = self._need(self.master_target, "the master target")
        return access.client("master target", MasterTargetClient)
