"""Storage accounts vmdr may write page blobs to, and their credentials.

A ``pageblob://ACCOUNT/CONTAINER/BLOB`` URL names an account, never a key: the
key comes from the accounts file (``$VMDR_STORAGE_ACCOUNTS``, default
``~/.config/vmdr/storage-accounts.json``, mode 0600), or from ``register`` in
the same process. The file maps account names to::

    {"endpoint": "https://host:port/account", "key": "<base64>", "ca_file": "/path/ca.pem"}

``ca_file`` is only for endpoints with a private CA (the lab's Azurite).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmdr.blocks.durable import write_atomically
from vmdr.providers.azure.errors import AzureProviderError


class StorageAccountUnknown(AzureProviderError):
    code = "VMDR-E0701"
    msg = "no credentials for storage account {account!r} (looked in {where})"
    fix = "Add the account to that file, or set VMDR_STORAGE_ACCOUNTS to the lab's file."


@dataclass(frozen=True)
class StorageAccount:
    name: str
    endpoint: str
    key: str
    ca_file: str | None = None

    def __repr__(self) -> str:  # the key never appears in logs or tracebacks
        return f"StorageAccount(name={self.name!r}, endpoint={self.endpoint!r})"

    def connection_verify(self) -> str | bool:
        return self.ca_file or True


_registered: dict[str, StorageAccount] = {}


def accounts_file() -> Path:
    env = os.environ.get("VMDR_STORAGE_ACCOUNTS")
    return Path(env) if env else Path.home() / ".config" / "vmdr" / "storage-accounts.json"


def register(account: StorageAccount) -> None:
    _registered[account.name] = account


def lookup(name: str) -> StorageAccount:
    if name in _registered:
        return _registered[name]
    path = accounts_file()
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    entry = data.get(name)
    if not entry:
        raise StorageAccountUnknown(account=name, where=str(path))
    return StorageAccount(
        name=name, endpoint=entry["endpoint"], key=entry["key"], ca_file=entry.get("ca_file")
    )


def write_accounts_file(path: Path, accounts: list[StorageAccount]) -> None:
    payload = {
        a.name: {"endpoint": a.endpoint, "key": a.key, "ca_file": a.ca_file} for a in accounts
    }
    write_atomically(path, json.dumps(payload, indent=2).encode())
