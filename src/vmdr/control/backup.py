"""Backup and restore of the configuration server's database.

The source documents tell users to back the configuration server up
regularly and to restore it (with the same address) after a loss: without
it, failback fails. ``backup`` writes, while the server runs, one archive
(tar + gzip) of every table read in a single read transaction (a consistent
snapshot: WAL on SQLite, REPEATABLE READ on PostgreSQL)::

    manifest.json         {"format": 1, "schema_revision", "created", "vmdr_version",
                           "tables": {name: {"rows", "sha256"}}, "key_included"}
    manifest.json.sha256  SHA-256 of manifest.json
    tables/<name>.jsonl   one JSON object per row (bytes as {"$b64": …},
                          datetimes as ISO 8601)
    secret.key            the credentials key, only with ``with_key=True``

``restore`` checks every checksum before it writes anything, refuses an
archive of a newer format or schema than this vmdr knows, refuses a target
database that already holds data, and loads all tables in one transaction
(all or nothing). Archives are portable between SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import io
import json
import tarfile
import time
import zlib
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import DateTime, Engine, LargeBinary, func, insert, select

from vmdr import __version__
from vmdr.blocks.durable import write_atomically
from vmdr.control.db.engine import alembic_config, current_revision
from vmdr.control.db.models import Base
from vmdr.model.errors import VmdrError

__all__ = ["BackupCorrupt", "BackupTooNew", "RestoreTargetNotEmpty", "backup", "restore"]

FORMAT = 1


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


# Which processes run jobs now, with their leases: the state of this
# deployment, not data; a restored server has its own workers.
RUNTIME = frozenset({"workers"})


def _data_tables() -> list[Any]:
    return [t for t in Base.metadata.sorted_tables if t.name not in RUNTIME]


def backup(engine: Engine, path: Path, *, key_file: Path | None = None) -> dict[str, Any]:
    """Write a consistent archive of the database to ``path``; returns its manifest."""
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


def _read(path: Path) -> dict[str, bytes]:
    try:
        # Decompress the whole stream first: that checks gzip's CRC and
        # length, so a truncated archive is refused even where the cut only
        # took the tar's zero padding (tarfile alone stops before it).
        raw = gzip.decompress(path.read_bytes())
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            out = {}
            for member in tar.getmembers():
                if not member.isfile() or member.size > 1 << 31:
                    raise BackupCorrupt(path=str(path), detail=f"odd member {member.name!r}")
                f = tar.extractfile(member)
                assert f is not None
                out[member.name] = f.read()
            return out
    except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
        raise BackupCorrupt(path=str(path), detail=str(exc)) from exc


def verify(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and members of a backup whose every checksum holds."""
    members = _read(path)
    raw = members.get("manifest.json")
    digest = members.get("manifest.json.sha256", b"").decode().strip()
    if raw is None or hashlib.sha256(raw).hexdigest() != digest:
        raise BackupCorrupt(path=str(path), detail="the manifest's checksum does not match")
    manifest = json.loads(raw)
    if manifest.get("format", 0) > FORMAT:
        raise BackupTooNew(path=str(path), detail=f"archive format {manifest['format']}")
    for name, info in manifest["tables"].items():
        data = members.get(f"tables/{name}.jsonl")
        if data is None or hashlib.sha256(data).hexdigest() != info["sha256"]:
            raise BackupCorrupt(path=str(path), detail=f"table {name} does not match its checksum")
    if manifest.get("key_included"):
        key = members.get("secret.key", b"")
        if hashlib.sha256(key).hexdigest() != manifest.get("key_sha256"):
            raise BackupCorrupt(path=str(path), detail="the credentials key does not match")
    return manifest, members


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


def restore(engine: Engine, path: Path, *, key_file: Path | None = None) -> dict[str, Any]:
    """Load a verified backup into an empty, migrated database."""
    manifest, members = verify(path)
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
            if rows:
                raise RestoreTargetNotEmpty(table=table.name, rows=rows)
        for table in _data_tables():
            data = members.get(f"tables/{table.name}.jsonl", b"")
            rows_in = [json.loads(line) for line in data.splitlines() if line]
            if rows_in:
                cols = table.columns
                values = [
                    {k: _decode(cols[k], v) for k, v in r.items() if k in cols} for r in rows_in
                ]
                conn.execute(insert(table), values)
        if engine.dialect.name == "postgresql":
            _advance_sequences(conn)
    if key_file is not None and "secret.key" in members:
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(key_file, members["secret.key"])
    return manifest
