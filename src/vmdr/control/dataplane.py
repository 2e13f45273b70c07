"""How the configuration server's workflows reach the data plane.

The workflows never move bytes inside an HTTP handler; their job steps hand
backend URLs to the block engine or to the replication roles. This file says
where those are (``<state>/dataplane.json``, written by the operator or by
``vmdr lab up``)::

    {
      "datastores": {"vmfs-01": "/vmfs/volumes/vmfs-01", ...},
      "storage_account": "vmdrlab",
      "container": "vmdr-replicas",
      "cloud_compute": {"driver": "azure", "subscription_id": "…", "resource_group": "dr",
                        "location": "westeurope"},
      "process_server": {"url": "https://...", "ca": "ca.pem", "token_file": "ps.token"},
      "master_target": {"url": "https://...", "ca": "ca.pem", "token_file": "mt.token"},
      "dns": {"server": "10.0.0.53", "port": 53, "zone": "example.com.",
              "key_name": "vmdr.", "algorithm": "hmac-sha256", "secret_file": "tsig.key"},
      "replication_interval": 300, "point_retention": 24, "rpo_threshold": 900
    }

The file is typed (``DataPlane``, pydantic): read per use, so that it may be
written while the server runs, and refused whole (``VMDR-E0561``, naming
each wrong key) when it is malformed or has a key vmdr does not know.

- ``datastores``: where the on-premises datastores are mounted for reading,
  used by the cloud-bound direction (protect, reprotect to the cloud): in this
  version the configuration server's jobs play the on-premises process server
  for that direction, reading VMDK extents and writing page blobs.
- ``storage_account``/``container``: the cloud disks (page blobs).
- ``cloud_compute``: which cloud compute service makes, powers and deletes
  the recovery VMs, chosen by its ``driver`` (``providers/azure/
  compute_setting.py``); the workflows see only ``CloudCompute``, and
  ``GET /v1/server/info`` says which one runs.
- ``process_server``/``master_target``: the roles the failback direction uses
  (cloud process server → on-premises master target), with a token each.
- ``dns``: the server the traffic manager updates (docs/traffic.md).
- ``replication_interval``, ``point_retention``, ``rpo_threshold``: seconds
  between replication cycles (300), recovery points kept per item (24), and
  the RPO beyond which an item's health is a warning.

Paths are confined the way the master target confines them
(``roles.datastores``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from vmdr.model.dspath import DatastoreFile
from vmdr.model.errors import VmdrError, validation_summary
from vmdr.providers.azure.compute import CloudCompute
from vmdr.providers.azure.compute_setting import ComputeSetting
from vmdr.roles.clients import MasterTargetClient, ProcessServerClient
from vmdr.roles.datastores import DatastorePath, DatastoreRoots
from vmdr.transport.client import ServiceClient

__all__ = ["DataPlane", "DataPlaneMalformed", "DataPlaneMissing", "DnsSpec", "RoleAccess"]

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


class DataPlaneMalformed(VmdrError):
    code = "VMDR-E0561"
    http_status = 409
    msg = "the data-plane file {path} is not valid: {detail}"
    fix = "Correct it (docs/workflows.md lists its keys); nothing ran with it."


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleAccess(_Section):
    url: str = Field(pattern=r"^https://")
    ca: Path
    token_file: Path  # read when a client is made, not each time the file is loaded

    def client(self, name: str, kind: type[C], timeout: float = 120.0) -> C:
        token = self.token_file.read_text().strip()
        return kind(name, self.url, self.ca, token, timeout=timeout)


class DnsSpec(_Section):
    """The DNS server the traffic manager updates (RFC 2136, TSIG)."""

    server: str
    port: int = Field(default=53, ge=1, le=65535)
    zone: str
    key_name: str
    algorithm: str = "hmac-sha256"
    secret_file: Path | None = None
    secret: str | None = Field(default=None, repr=False)  # better in secret_file


class DataPlane(_Section):
    datastores: dict[str, Path] = {}
    storage_account: str | None = None
    container: str = "vmdr-replicas"
    cloud_compute: ComputeSetting | None = None
    process_server: RoleAccess | None = None
    master_target: RoleAccess | None = None
    dns: DnsSpec | None = None
    replication_interval: float | None = Field(default=None, gt=0)  # seconds between cycles
    point_retention: int | None = Field(default=None, ge=1)  # points kept per item
    rpo_threshold: float | None = Field(default=None, gt=0)  # seconds before "Warning"
    _path: Path = PrivateAttr(default=Path(FILE))

    @model_validator(mode="before")
    @classmethod
    def _absent_when_empty(cls, raw: Any) -> Any:
        # As the hand-written loader had it: a section left empty ("dns": {},
        # "cloud_compute": "", null) is a section not given.
        if isinstance(raw, dict):
            return {k: v for k, v in raw.items() if v not in (None, "", {}, [])}
        return raw

    @property
    def path(self) -> Path:
        return self._path

    @classmethod
    def load(cls, state_dir: Path) -> DataPlane:
        """The file as it is now (read per use: an operator, or the lab, may
        write it while the server runs); an empty one without the file."""
        path = state_dir / FILE
        try:
            raw = json.loads(path.read_text()) if path.exists() else {}
            plane = cls.model_validate(raw)
        except ValidationError as exc:
            detail = validation_summary(exc.errors())
            raise DataPlaneMalformed(path=str(path), detail=detail) from None
        except (OSError, ValueError) as exc:  # unreadable, or not JSON
            raise DataPlaneMalformed(path=str(path), detail=str(exc)) from None
        plane._path = path
        return plane

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

    def compute(self) -> CloudCompute:
        compute: CloudCompute = self._need(self.cloud_compute, "the cloud compute").open()
        return compute

    def describe(self) -> dict[str, Any]:
        """What the workflows will use, for the server's info (no secrets)."""
        return {
            "path": str(self.path),
            "cloud_compute": self.cloud_compute.describe() if self.cloud_compute else None,
            "storage_account": self.storage_account,
            "container": self.container,
            "datastores": sorted(self.datastores),
            "process_server": self.process_server.url if self.process_server else None,
            "master_target": self.master_target.url if self.master_target else None,
            "dns_zone": self.dns.zone if self.dns else None,
        }

    def ps(self) -> ProcessServerClient:
        access: RoleAccess = self._need(self.process_server, "the cloud process server")
        return access.client("process server", ProcessServerClient)

    def mt(self) -> MasterTargetClient:
        access: RoleAccess = self._need(self.master_target, "the master target")
        return access.client("master target", MasterTargetClient)
