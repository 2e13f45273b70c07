"""The lab folder: what runs, where, and the credentials it was given.

Layout of a lab folder (default ``./.vmdr-lab``)::

    lab.json            services: name, pid + start time, address, log (no secrets)
    credentials.json    vCenter user/password, storage account key, TSIG key (mode 0600)
    inventory.json      what the lab created: VMs, disks, physical servers
    pki/                the lab CA and each service's certificate
    logs/               one log per service
    vcsim/ azurite/ dns/ datastores/   each service's own files
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vmdr.blocks.durable import write_atomically
from vmdr.lab.process import ProcessRecord

STATE_FILE = "lab.json"
CREDENTIALS_FILE = "credentials.json"
INVENTORY_FILE = "inventory.json"


@dataclass
class ServiceRecord:
    name: str
    process: ProcessRecord
    host: str
    port: int
    url: str
    log: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["process"] = self.process.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceRecord:
        return cls(
            name=data["name"],
            process=ProcessRecord.from_dict(data["process"]),
            host=data["host"],
            port=int(data["port"]),
            url=data["url"],
            log=data["log"],
            details=dict(data.get("details", {})),
        )


@dataclass
class LabState:
    directory: Path
    services: list[ServiceRecord] = field(default_factory=list)

    def save(self) -> None:
        payload = {"services": [s.to_dict() for s in self.services]}
        _atomic_write(self.directory / STATE_FILE, json.dumps(payload, indent=2), 0o644)

    @classmethod
    def load(cls, directory: Path) -> LabState | None:
        path = directory / STATE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(directory, [ServiceRecord.from_dict(s) for s in data["services"]])

    def service(self, name: str) -> ServiceRecord:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)


def _atomic_write(path: Path, text: str, mode: int) -> None:
    write_atomically(path, text.encode(), mode)


def save_credentials(directory: Path, creds: dict[str, Any]) -> None:
    _atomic_write(directory / CREDENTIALS_FILE, json.dumps(creds, indent=2), 0o600)


def load_credentials(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / CREDENTIALS_FILE).read_text())
    return data


def save_inventory(directory: Path, inventory: dict[str, Any]) -> None:
    _atomic_write(directory / INVENTORY_FILE, json.dumps(inventory, indent=2), 0o644)


def load_inventory(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / INVENTORY_FILE).read_text())
    return data
