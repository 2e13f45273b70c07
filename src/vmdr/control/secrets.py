"""Credentials at rest: vCenter and ESX passwords are stored encrypted.

``SecretBox`` encrypts with Fernet (AES-128-CBC + HMAC-SHA256, from
``cryptography``) under a key kept in the configuration server's state folder
(``secret.key``, mode 0600, made on first start). The database alone — or a
backup of it — reveals no password; restoring a backup onto a new server
needs the key file too (``vmdr server backup`` puts it in the archive only
when asked, see ``control.backup``). A value never appears in ``repr``.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from vmdr.blocks.durable import write_atomically
from vmdr.model.errors import VmdrError
from vmdr.transport.grants import GrantSigner

__all__ = ["SecretBox", "SecretUnreadable"]

KEY_FILE = "secret.key"


class SecretUnreadable(VmdrError):
    code = "VMDR-E0520"
    http_status = 500
    msg = "a stored credential cannot be decrypted with the key in {path}"
    fix = (
        "Restore the secret.key that belongs to this database (it travels with "
        "`vmdr server backup --with-key`), or enter the credentials again."
    )


class SecretBox:
    def __init__(self, key: bytes, path: Path | None = None) -> None:
        self._fernet = Fernet(key)
        # Derived once: every replication start, registration and info asks.
        self._signer = GrantSigner.from_secret(key)
        self.path = path

    @classmethod
    def in_folder(cls, folder: Path) -> SecretBox:
        """The server's key, made on first use."""
        path = folder / KEY_FILE
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomically(path, Fernet.generate_key())
        return cls(path.read_bytes().strip(), path)

    def seal(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def open(self, sealed: bytes) -> str:
        try:
            return self._fernet.decrypt(sealed).decode()
        except InvalidToken:
            raise SecretUnreadable(path=str(self.path or "memory")) from None

    def grant_signer(self) -> GrantSigner:
        """What signs the disks this server assigns to process servers and
        master targets (``transport.grants``): derived from this key, so a
        server restored with its key signs as before."""
        return self._signer

    def __repr__(self) -> str:
        return f"SecretBox(path={self.path})"
