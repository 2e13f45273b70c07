"""Grants: which disk a process server may read and a master target may write.

A service token says *who* calls a process server or a master target; it says
nothing about *which* disk the call may touch. Before grants, whoever held
the token could have the process server copy any local file it can read (a
password file, the configuration server's keys) to the master target, and
the master target write into any disk under its datastores.

Now the configuration server signs each assignment it makes — "replicate
source S as disk D into datastore/path P", "materialise disk D's point into
datastore/path Q" — and the roles act only on a request that carries such a
grant, and only on what the grant names. The process server keeps a
replication's grant and hands it on to the master target when it opens the
disk, so one grant covers both ends of one replication.

Signatures are Ed25519 (``cryptography``): the roles hold only the public key
(from their registration answer, ``--grant-key``), so a stolen process server
or master target cannot sign. The configuration server derives its signing
key from its ``secret.key`` (HKDF), so a restored server (which restores that
key) signs as before and registered roles need nothing new.

A grant is ``g1.<claims>.<signature>``, both parts base64url; the claims are
JSON: ``purpose``, ``exp`` (Unix time) and the names the grant covers. A role
checks that every name it acts on equals the grant's (``check``); a grant
may name more than one role needs (the master target does not read the
source).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vmdr.model.errors import UsageError, VmdrError

__all__ = [
    "MATERIALISE",
    "REPLICATE",
    "GrantRefused",
    "GrantSigner",
    "GrantVerifier",
    "replication_names",
    "target_names",
]

VERSION = "g1"
REPLICATE = "replicate"
MATERIALISE = "materialise"
# A replication's grant is checked when the process server accepts it and
# each time it (re)opens the target disk before the initial sync is done;
# a materialise's, once, at once.
TTL = {REPLICATE: 7 * 86400.0, MATERIALISE: 3600.0}
MAX_GRANT = 8192
_ABSENT = object()


def target_names(
    datastore: str | None = None, path: str | None = None, device: str | None = None
) -> dict[str, Any]:
    """What names a disk a master target writes: a VMDK attached to its VM
    (``device``, the VMDK UUID), else a file in one of its datastores."""
    return {"device": device} if device is not None else {"datastore": datastore, "path": path}


def replication_names(rid: str, source: str, target: dict[str, Any]) -> dict[str, Any]:
    """What a replication's grant covers: the process server checks the id,
    source and target; the master target the disk (the id) and the target
    (``target_names``)."""
    return {"id": rid, "disk": rid, "source": source, **target}


class GrantRefused(VmdrError):
    code = "VMDR-E0360"
    http_status = 403
    msg = "{what} refused: {detail}"
    fix = (
        "Only the configuration server assigns disks to a process server or a master "
        "target: start the replication or the materialise through it (reprotect, failback "
        "drill). If the configuration server was rebuilt with another secret.key, register "
        "this service with it again and restart it with the new --grant-key."
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class GrantSigner:
    """The configuration server's side: signs assignments."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def from_secret(cls, secret: bytes) -> GrantSigner:
        """The signing key derived from the server's secret key (HKDF-SHA256)."""
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=b"vmdr grant signing key v1").derive(secret)  # fmt: skip
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def public_pem(self) -> str:
        return (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def sign(self, purpose: str, claims: Mapping[str, Any], now: float | None = None) -> str:
        at = now or time.time()
        # ``iat`` (milliseconds) orders the grants of one disk: a master
        # target refuses one older than the disk's last (a replay).
        body = {**claims, "purpose": purpose, "iat": int(at * 1000), "exp": int(at + TTL[purpose])}
        payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return f"{VERSION}.{_b64(payload)}.{_b64(self._key.sign(payload))}"

    def __repr__(self) -> str:
        return "GrantSigner(<private>)"


class GrantVerifier:
    """A role's side: accepts only what the configuration server signed."""

    def __init__(self, public_pem: bytes) -> None:
        key = serialization.load_pem_public_key(public_pem)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        self._key = key

    @classmethod
    def load(cls, path: Path) -> GrantVerifier:
        try:
            return cls(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise UsageError(
                detail=f"--grant-key {path}: not the configuration server's grant key ({exc}); "
                "it is the `grant_key` of this service's registration answer"
            ) from None

    def check(
        self, grant: str | None, purpose: str, what: str, names: Mapping[str, Any],
        now: float | None = None, expired_ok: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """The grant's claims, if it is the configuration server's, for
        ``purpose``, unexpired (unless ``expired_ok``: a disk already
        registered under it, opened again), and names exactly ``names`` (same
        value, same type); else GrantRefused."""
        claims = self._claims(grant, what)
        if claims.get("purpose") != purpose:
            raise GrantRefused(what=what, detail=f"the grant is for {claims.get('purpose')!r}")
        expires, issued = claims.get("exp"), claims.get("iat")
        if not isinstance(expires, int) or not isinstance(issued, int):
            raise GrantRefused(what=what, detail="the grant is malformed")
        if expires < (now or time.time()) and not expired_ok:
            raise GrantRefused(what=what, detail="the grant has expired")
        for name, value in names.items():
            given = claims.get(name, _ABSENT)
            if type(given) is not type(value) or given != value:
                raise GrantRefused(what=what, detail=f"the grant does not cover this {name}")
        return claims

    def _claims(self, grant: str | None, what: str) -> dict[str, Any]:
        if not grant:
            raise GrantRefused(what=what, detail="no grant from the configuration server")
        parts = grant.split(".")
        if len(grant) > MAX_GRANT or len(parts) != 3 or parts[0] != VERSION:
            raise GrantRefused(what=what, detail="the grant is malformed")
        try:
            payload, signature = _unb64(parts[1]), _unb64(parts[2])
            self._key.verify(signature, payload)
            claims = json.loads(payload)
        except (binascii.Error, ValueError, InvalidSignature):
            raise GrantRefused(
                what=what, detail="the grant is not signed by this service's configuration server"
            ) from None
        if not isinstance(claims, dict):
            raise GrantRefused(what=what, detail="the grant is malformed")
        return claims

    def __repr__(self) -> str:
        return "GrantVerifier()"
