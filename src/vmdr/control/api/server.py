"""The configuration server itself over HTTP: what it runs with, a backup,
and a restore onto a fresh server (``control/backup.py``).

    GET  /v1/server/info                     database, data plane (which cloud
                                             compute runs), grant key; no secrets
    GET  /v1/server/backup[?with_key=true]   a consistent archive, signed
    GET  /v1/server/backup-key               the key that signs them (keep it apart)
    POST /v1/server/restore[?allow_unsigned=true]
         X-Vmdr-Backup-Key: <the key of the server that made the archive>
                                             archive in; only onto a fresh server
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from vmdr.control.api.roles import adopt_role_tokens
from vmdr.control.backup import BackupCorrupt, backup
from vmdr.control.server import ConfigServer
from vmdr.model.errors import VmdrError
from vmdr.transport.auth import TokenStore

log = logging.getLogger(__name__)
MAX_BACKUP = 1 << 30  # bytes of a restore upload
KEY_HEADER = "X-Vmdr-Backup-Key"


def add_server_routes(app: FastAPI, cs: ConfigServer, tokens: TokenStore) -> None:
    @app.get("/v1/server/info")
    def get_info() -> dict[str, Any]:
        """What this server runs with; a malformed data-plane file is named
        with its problem instead of failing the answer."""
        try:
            plane: dict[str, Any] = cs.workflows.dataplane.describe()
        except VmdrError as exc:
            plane = {"error": exc.to_dict()}
        return {
            "database": cs.engine.dialect.name,
            "dataplane": plane,
            "grant_key": cs.secrets.grant_signer().public_pem(),
        }

    @app.get("/v1/server/backup")
    def get_backup(with_key: bool = False) -> Response:
        """A consistent archive of the database (and the credentials key if
        asked), signed with this server's backup key."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "backup"
            backup(cs.engine, path, signing_key=cs.backup_key,
                   key_file=cs.secrets.path if with_key else None)  # fmt: skip
            data = path.read_bytes()
        log.info("backup taken (%d bytes, key included: %s)", len(data), with_key)
        return Response(data, media_type="application/gzip")

    @app.get("/v1/server/backup-key")
    def get_backup_key() -> dict[str, str]:
        """The key this server signs its backups with: a restore onto a fresh
        server needs it, so keep a copy apart from the archives."""
        return {"key": cs.backup_key.decode()}

    @app.post("/v1/server/restore")
    async def post_restore(
        request: Request,
        allow_unsigned: bool = False,
        key: str | None = Header(default=None, alias=KEY_HEADER, pattern=r"^[0-9a-f]{64}$"),
    ) -> dict[str, Any]:
        """Load an archive into this (fresh) server; all or nothing. The
        upload goes to a temporary file as it arrives (bounded memory)."""
        signing_key = key.encode() if key else cs.backup_key
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "backup"
            size = 0
            with path.open("wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_BACKUP:
                        raise BackupCorrupt(path="upload", detail=f"larger than {MAX_BACKUP} bytes")
                    f.write(chunk)
            manifest = await run_in_threadpool(cs.restore, path, signing_key,
                                               allow_unsigned=allow_unsigned)  # fmt: skip
        adopt_role_tokens(cs.sessions, tokens)
        await run_in_threadpool(cs.jobs.reconcile)
        return {"restored": True, "tables": manifest["tables"], "created": manifest["created"]}
