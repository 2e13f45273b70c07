"""Backup and restore of the configuration server's database.

The source documents tell users to back the configuration server up
regularly and to restore it (with the same address) after a loss: without
it, failback fails. ``backup`` writes, while the server runs, one archive
(tar + gzip) of every table read in a single read transaction (a consistent
snapshot: WAL on SQLite, REPEATABLE READ on PostgreSQL)::

    manifest.json         {"format": 1, "schema_revision", "created", "vmdr_version",
                           "tables": {name: {"rows", "sha256"}}, "key_included"}
    manifest.json.sha256  SHA-256 of manifest.json
    manifest.json.hmac    HMAC-SHA256 of manifest.json under the server's backup
                          key (``<state>/backup.key``, never in the archive)
    tables/<name>.jsonl   one JSON object per row (bytes as {"$b64": …},
                          datetimes as ISO 8601)
    secret.key            the credentials key, only with ``with_key=True``

``restore`` checks every checksum before it writes anything, and that the
manifest (which holds every member's checksum) is signed by the backup key
given: checksums show damage, the signature shows forgery — someone who can
write the archive cannot make one this server accepts without that key. It
refuses an archive of a newer format or schema than this vmdr knows, refuses
a target database that already holds data (its audit log aside: kept after
the archive's), and loads all tables in one
transaction (all or nothing). Archives are portable between SQLite and
PostgreSQL. An archive made before backups were signed is restored only
when the operator says so (``allow_unsigned``).
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import hmac
import io
import json
import logging
import secrets
import tarfile
import time
import zlib
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import DateTime, Engine, LargeBinary, func, insert, select
from sqlalchemy.exc import StatementError

from vmdr import __version__
from vmdr.blocks.durable import write_atomically
from vmdr.control.db.engine import alembic_config, current_revision
from vmdr.control.db.models import Base
from vmdr.model.errors import VmdrError, validation_summary

__all__ = [
    "BackupCorrupt",
    "BackupNotAuthentic",
    "BackupTooNew",
    "RestoreTargetNotEmpty",
    "backup",
    "backup_key_in",
    "restore",
]

FORMAT = 1
log = logging.getLogger(__name__)


class BackupCorrupt(VmdrError):
    code = "VMDR-E0530"
    http_status = 400
    msg = "backup {path} is damaged: {detail}"
    fix = "Use another backup; nothing was written to the database."


class BackupTooNew(VmdrError):
    code = "VMDR-E0531"
    http_status = 400
    msg = "backup {path} was made by a newer vmdr ({detail})"
    fix = "Restore it with that vmdr version or newer; nothing was written."


class BackupNotAuthentic(VmdrError):
    code = "VMDR-E0533"
    http_status = 400
    msg = "backup {path} is not signed by the backup key given: {detail}"
    fix = (
        "Give the backup key of the server that made it (`vmdr server backup-key` on that "
        "server, kept apart from the archives). An archive from before signed backups: "
        "--allow-unsigned. Nothing was written."
    )


KEY_FILE = "backup.key"
SIGNATURE = "manifest.json.hmac"


def backup_key_in(folder: Path) -> bytes:
    """The server's backup key (32 random bytes, hex), made on first use."""
    path = folder / KEY_FILE
    if not path.exists():
        write_atomically(path, secrets.token_hex(32).encode())
    return path.read_bytes().strip()


def _sign(key: bytes, manifest: bytes) -> bytes:
    return hmac.new(key, manifest, hashlib.sha256).hexdigest().encode()


class RestoreTargetNotEmpty(VmdrError):
    code = "VMDR-E0532"
    http_status = 409
    msg = "the target database already holds data (table {table} has {rows} rows)"
    fix = "Restore onto a fresh configuration server (an empty database)."


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$b64": base64.b64encode(value).decode()}
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _decode(column: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column.type, LargeBinary):
        return base64.b64decode(value["$b64"])
    if isinstance(column.type, DateTime):
        return dt.datetime.fromisoformat(value)
    return value


# Which processes run jobs now, with their leases, and who is logged in: the
# state of this deployment, not data; a restored server has its own workers,
# and its users log in again.
RUNTIME = frozenset({"workers", "user_sessions"})


# Tables a fresh server may already have rows in: the audit log of what was
# asked of it before the restore. They are kept, after the archive's.
APPENDED = frozenset({"audit"})


def _data_tables() -> list[Any]:
    return [t for t in Base.metadata.sorted_tables if t.name not in RUNTIME]


def backup(
    engine: Engine, path: Path, *, signing_key: bytes, key_file: Path | None = None
) -> dict[str, Any]:
    """Write a consistent archive of the database to ``path``, signed with
    ``signing_key``; returns its manifest."""
    tables: dict[str, bytes] = {}
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    with conn, conn.begin():  # one snapshot for every table
        revision = current_revision_in(conn)
        for table in _data_tables():
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).mappings()
            lines = [json.dumps({k: _encode(v) for k, v in r.items()}) for r in rows]
            tables[table.name] = ("\n".join(lines) + "\n" if lines else "").encode()
    manifest = {
        "format": FORMAT,
        "schema_revision": revision,
        "created": time.time(),
        "vmdr_version": __version__,
        "key_included": key_file is not None,
        "tables": {
            name: {"rows": data.count(b"\n"), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in tables.items()
        },
    }
    members = {f"tables/{name}.jsonl": data for name, data in tables.items()}
    if key_file is not None:
        key = key_file.read_bytes()
        members["secret.key"] = key
        manifest["key_sha256"] = hashlib.sha256(key).hexdigest()
    raw = json.dumps(manifest, indent=2).encode()
    members = {
        "manifest.json": raw,
        "manifest.json.sha256": hashlib.sha256(raw).hexdigest().encode(),
        SIGNATURE: _sign(signing_key, raw),
        **members,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(data))
    write_atomically(path, buf.getvalue())
    return manifest


def current_revision_in(conn: Any) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


# What a restore unpacks at most: a bound on memory and time whatever the
# archive claims (a gzip bomb of 1 MiB unpacked to 2.2 GiB before any check).
MAX_UNPACKED = 512 << 20
MAX_MEMBERS = 256


class _TableEntry(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    rows: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class _Manifest(BaseModel):
    """``manifest.json`` as restore needs it: any other shape is damage."""

    model_config = ConfigDict(extra="ignore", strict=True)
    format: int = Field(ge=1)
    schema_revision: str = Field(min_length=1, max_length=64)
    created: float
    key_included: bool = False
    key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    tables: dict[str, _TableEntry]


def _read(path: Path) -> dict[str, bytes]:
    """The archive's members, streamed: each member's size is checked from
    its header before it is read, against ``MAX_UNPACKED`` in all; the gzip
    stream is then read to its end, which checks its CRC and length (a cut
    that took only the tar's zero padding is refused too)."""
    out: dict[str, bytes] = {}
    unpacked = 0
    try:
        with gzip.open(path, "rb") as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
            for member in tar:
                unpacked += member.size
                if not member.isfile() or len(out) >= MAX_MEMBERS or member.name in out:
                    raise BackupCorrupt(path=str(path), detail=f"odd member {member.name!r}")
                if unpacked > MAX_UNPACKED:
                    detail = f"it unpacks to more than {MAX_UNPACKED} bytes"
                    raise BackupCorrupt(path=str(path), detail=detail)
                f = tar.extractfile(member)
                assert f is not None
                out[member.name] = f.read()
            while gz.read(1 << 20):  # the rest: padding, then the CRC and length
                pass
    except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
        raise BackupCorrupt(path=str(path), detail=str(exc)) from exc
    return out


def verify(
    path: Path, signing_key: bytes | None, *, allow_unsigned: bool = False
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and members of a backup whose every checksum holds and
    whose manifest ``signing_key`` signed."""
    members = _read(path)
    raw = members.get("manifest.json")
    digest = members.get("manifest.json.sha256", b"").decode(errors="replace").strip()
    if raw is None or hashlib.sha256(raw).hexdigest() != digest:
        raise BackupCorrupt(path=str(path), detail="the manifest's checksum does not match")
    signature = members.get(SIGNATURE)
    if signature is None:
        if not allow_unsigned:
            raise BackupNotAuthentic(path=str(path), detail="it carries no signature")
        log.warning("restoring %s, which carries no signature, as the operator asked", path)
    elif signing_key is None:
        raise BackupNotAuthentic(path=str(path), detail="no backup key was given")
    elif not hmac.compare_digest(signature.strip(), _sign(signing_key, raw)):
        raise BackupNotAuthentic(path=str(path), detail="the signature does not match")
    try:
        document = json.loads(raw)
        if isinstance(document, dict) and isinstance(document.get("format"), int) \
                and document["format"] > FORMAT:  # fmt: skip
            raise BackupTooNew(path=str(path), detail=f"archive format {document['format']}")
        manifest = _Manifest.model_validate(document)
    except (ValueError, ValidationError) as exc:
        detail = validation_summary(exc.errors()) if isinstance(exc, ValidationError) else exc
        raise BackupCorrupt(path=str(path), detail=f"manifest: {detail}") from None
    for name, info in manifest.tables.items():
        data = members.get(f"tables/{name}.jsonl")
        if data is None or hashlib.sha256(data).hexdigest() != info.sha256:
            raise BackupCorrupt(path=str(path), detail=f"table {name} does not match its checksum")
    if manifest.key_included:
        key = members.get("secret.key", b"")
        if hashlib.sha256(key).hexdigest() != manifest.key_sha256:
            raise BackupCorrupt(path=str(path), detail="the credentials key does not match")
    return dict(document), members


def _advance_sequences(conn: Any) -> None:
    """Rows came in with their ids: move each serial id's sequence past them,
    or the next insert on the restored server would collide."""
    from sqlalchemy import Integer, text

    for table in Base.metadata.sorted_tables:
        for column in table.primary_key.columns:
            if isinstance(column.type, Integer) and column.autoincrement in (True, "auto"):
                conn.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                    f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"
                ))  # fmt: skip


def restore(
    engine: Engine,
    path: Path,
    *,
    signing_key: bytes | None,
    key_file: Path | None = None,
    allow_unsigned: bool = False,
) -> dict[str, Any]:
    """Load a verified backup into an empty, migrated database."""
    manifest, members = verify(path, signing_key, allow_unsigned=allow_unsigned)
    known = {
        r.revision for r in ScriptDirectory.from_config(alembic_config(engine)).walk_revisions()
    }
    revision = manifest["schema_revision"]
    if revision not in known:
        raise BackupTooNew(path=str(path), detail=f"database schema {revision}")
    if current_revision(engine) is None:
        raise VmdrError(detail="the target database has no schema: open it with vmdr first")
    with engine.begin() as conn:
        for table in _data_tables():
            rows = conn.execute(select(func.count()).select_from(table)).scalar_one()
            if rows and table.name not in APPENDED:
                raise RestoreTargetNotEmpty(table=table.name, rows=rows)
        # The fresh server's own audit lines (its failed restore attempts, say)
        # are kept, after the archive's: taken out, put back once it is in.
        audit = Base.metadata.tables["audit"]
        own = [dict(r) for r in conn.execute(select(audit).order_by(audit.c.id)).mappings()]
        conn.execute(audit.delete())
        for table in _data_tables():
            data = members.get(f"tables/{table.name}.jsonl", b"")
            try:
                rows_in = [json.loads(line) for line in data.splitlines() if line]
                cols = table.columns
                values = [
                    {k: _decode(cols[k], v) for k, v in r.items() if k in cols} for r in rows_in
                ]
                if values:
                    conn.execute(insert(table), values)
            except (ValueError, TypeError, KeyError, AttributeError, StatementError) as exc:
                # All or nothing: the transaction is rolled back.
                detail = f"table {table.name}: {type(exc).__name__}: {str(exc)[:300]}"
                raise BackupCorrupt(path=str(path), detail=detail) from None
        if engine.dialect.name == "postgresql":
            _advance_sequences(conn)
        if own:
            conn.execute(insert(audit), [{k: v for k, v in r.items() if k != "id"} for r in own])
    if key_file is not None and "secret.key" in members:
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(key_file, members["secret.key"])
    return manifest
