"""The configuration server itself over HTTP: a backup, and a restore onto a
fresh server (``control/backup.py``).

    GET  /v1/server/backup[?with_key=true]   a consistent archive
    POST /v1/server/restore                  archive in; only onto a fresh server
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from vmdr.control.api.roles import adopt_role_tokens
from vmdr.control.backup import BackupCorrupt, backup
from vmdr.control.server import ConfigServer
from vmdr.transport.auth import TokenStore

log = logging.getLogger(__name__)
MAX_BACKUP = 1 << 30  # bytes of a restore upload


def add_server_routes(app: FastAPI, cs: ConfigServer, tokens: TokenStore) -> None:
    @app.get("/v1/server/backup")
    def get_backup(with_key: bool = False) -> Response:
        """A consistent archive of the database (and the credentials key if asked)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "backup"
            backup(cs.engine, path, key_file=cs.secrets.path if with_key else None)
            data = path.read_bytes()
        log.info("backup taken (%d bytes, key included: %s)", len(data), with_key)
        return Response(data, media_type="application/gzip")

    @app.post("/v1/server/restore")
    async def post_restore(request: Request) -> dict[str, Any]:
        """Load an archive into this (fresh) server; all or nothing."""
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BACKUP:
                raise BackupCorrupt(path="upload", detail=f"larger than {MAX_BACKUP} bytes")
        manifest = await run_in_threadpool(cs.restore, bytes(body))
        adopt_role_tokens(cs.sessions, tokens)
        await run_in_threadpool(cs.jobs.reconcile)
        return {"restored": True, "tables": manifest["tables"], "created": manifest["created"]}
