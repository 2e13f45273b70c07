"""Tokens for vmdr's services: registration with a one-time passphrase.

Every service keeps, in its state folder:

- ``registration-passphrase`` (mode 0600): a random passphrase. Whoever can
  read it (the service's administrator, the lab, later the configuration
  server) may register *once* with it; the service then writes a new one.
- ``tokens.json`` (mode 0600): the registered clients, each a name and the
  SHA-256 of its token. Tokens themselves are never stored, logged or shown
  again after registration: a stolen state folder yields no usable token.

A request carries ``Authorization: Bearer <token>``. Comparison is constant
time over the digests (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from vmdr.blocks.durable import write_atomically
from vmdr.model.errors import VmdrError

__all__ = [
    "BadClientName",
    "BadPassphrase",
    "Forbidden",
    "Principal",
    "TokenStore",
    "Unauthorized",
]

PASSPHRASE_FILE = "registration-passphrase"
TOKENS_FILE = "tokens.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class AuthError(VmdrError):
    code = "VMDR-E0350"
    msg = "{detail}"


class Unauthorized(AuthError):
    code = "VMDR-E0351"
    http_status = 401
    msg = "the request has {detail}"
    fix = (
        "Send `Authorization: Bearer <token>` with the token this service issued at "
        "registration (`vmdr lab status` shows where the lab keeps its tokens)."
    )


class Forbidden(AuthError):
    code = "VMDR-E0357"
    http_status = 403
    msg = "client {client!r} may not call {method} {path}"
    fix = (
        "A service's token reaches only that service's own routes (a process server's or "
        "master target's: its heartbeat). Use an administrator's token for everything else."
    )


class BadPassphrase(AuthError):
    code = "VMDR-E0352"
    http_status = 403
    msg = "the registration passphrase is wrong or was already used"
    fix = "Read the current passphrase from {path} on the service's machine and register again."


class BadClientName(AuthError):
    code = "VMDR-E0353"
    http_status = 400
    msg = "client name {name!r} is not allowed"
    fix = "Use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."


@dataclass(frozen=True)
class Principal:
    """Who sent a request: a token client's name (or ``user:NAME``) and the
    role it acts with (a service's own clients are administrators of it)."""

    name: str
    role: str = "administrator"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Client:
    name: str
    digest: str
    registered: float


class TokenStore:
    """The registered clients of one service (thread-safe)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.passphrase_path = state_dir / PASSPHRASE_FILE
        self.tokens_path = state_dir / TOKENS_FILE
        self._lock = threading.Lock()
        if not self.passphrase_path.exists():
            self._new_passphrase()
        self._clients = self._load()

    def _new_passphrase(self) -> None:
        write_atomically(self.passphrase_path, secrets.token_urlsafe(24).encode() + b"\n")

    def _load(self) -> dict[str, Client]:
        if not self.tokens_path.exists():
            return {}
        data = json.loads(self.tokens_path.read_text())
        return {c["name"]: Client(c["name"], c["digest"], c["registered"]) for c in data}

    def _save(self) -> None:
        data = [c.__dict__ for c in self._clients.values()]
        write_atomically(self.tokens_path, json.dumps(data, indent=2).encode())

    def passphrase(self) -> str:
        return self.passphrase_path.read_text().strip()

    def register(self, name: str, passphrase: str) -> str:
        """Check the one-time passphrase, rotate it, and return a new token for
        ``name`` (replacing an earlier one of that name)."""
        if not _NAME.match(name):
            raise BadClientName(name=name)
        with self._lock:
            if not hmac.compare_digest(_digest(passphrase), _digest(self.passphrase())):
                raise BadPassphrase(path=str(self.passphrase_path))
            self._new_passphrase()
            token = secrets.token_urlsafe(32)
            self._clients[name] = Client(name, _digest(token), time.time())
            self._save()
            return token

    def adopt(self, name: str, digest: str) -> None:
        """Accept the token whose SHA-256 is ``digest`` as ``name``'s: a
        configuration server restored from a backup keeps trusting the roles
        registered with the server it replaces (their digests are in the
        database; the tokens themselves never were)."""
        if not _NAME.match(name) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise BadClientName(name=name)
        with self._lock:
            self._clients[name] = Client(name, digest, time.time())
            self._save()

    def issue(self, name: str) -> str:
        """A token for ``name`` without a passphrase: for code that already
        holds the state folder (the lab, a service registering its own admin)."""
        return self.register(name, self.passphrase())

    def authenticate(self, header: str | None) -> str:
        """The client name for an ``Authorization`` header, or ``Unauthorized``."""
        if not header:
            raise Unauthorized(detail="no Authorization header")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(detail="an Authorization header that is not `Bearer <token>`")
        digest = _digest(token.strip())
        found = None
        with self._lock:
            for client in self._clients.values():
                # Compare against every client: no early exit to time.
                if hmac.compare_digest(client.digest, digest):
                    found = client.name
        if found is None:
            raise Unauthorized(detail="a token this service did not issue")
        return found

    def clients(self) -> list[str]:
        with self._lock:
            return sorted(self._clients)
