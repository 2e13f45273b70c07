"""``vmdr serve``: run one of vmdr's services in the foreground.

Its settings are typed and loaded once (``cli/settings.py``): a flag wins
over the environment (``VMDR_<SERVICE>_<NAME>``), which wins over the TOML
file of ``--config`` (keys are the long flag names with ``_`` for ``-``:
``datastore = ["vmfs-01=/srv/ds1"]``); an unknown key is refused. Secrets are
read from files (``--master-target-token-file``), never from flags, which
``ps`` would show.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer

from vmdr.cli.output import fail
from vmdr.cli.settings import (
    ConfigServerOptions,
    MasterTargetOptions,
    ProcessServerOptions,
    WorkerOptions,
)
from vmdr.model.errors import UsageError, VmdrError

app = typer.Typer(help="Run a vmdr service (HTTPS, token auth) in the foreground.")


def _run(name: str, s: Any, build: Callable[[Any], Any]) -> None:
    """Build the app with the service's token store, announce it, serve it."""
    from vmdr.transport.auth import TokenStore
    from vmdr.transport.service import ServiceSettings, serve, tls_files

    try:
        service = ServiceSettings(name, s.state_dir, s.host, s.port, cert=s.cert, key=s.key,
                                  ca_dir=s.ca_dir)  # fmt: skip
        app_ = build(TokenStore(s.state_dir))
        _, ca = tls_files(service)
    except VmdrError as exc:
        fail(exc)
    line = {"service": name, "url": f"https://{s.host}:{s.port}", "ca": str(ca),
            "state": str(s.state_dir)}  # fmt: skip
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    serve(app_, service, s.log_level)


ConfigOpt = typer.Option(None, "--config", help="TOML file with these settings.")
StateOpt = typer.Option(None, "--state-dir", help="Tokens, certificates, progress.")
HostOpt = typer.Option(None, "--host", help="Address to listen on (default 127.0.0.1).")
PortOpt = typer.Option(None, "--port", help="Port to listen on.")
CaOpt = typer.Option(None, "--ca-dir", help="Folder of the CA (default <state-dir>/pki).")
CertOpt = typer.Option(
    None, "--cert", help="Your own certificate (PEM, chain included); else one from the CA."
)
KeyOpt = typer.Option(None, "--key", help="The private key of --cert (PEM).")
LogOpt = typer.Option(None, "--log-level", help="debug, info (default), warning…")
CsOpt = typer.Option(
    None, "--configuration-server", help="https://HOST:PORT to send heartbeats to."
)
CsCaOpt = typer.Option(None, "--configuration-server-ca", help="The CA file it uses.")
CsTokenOpt = typer.Option(
    None, "--configuration-server-token-file", help="File with the token it issued us."
)
GrantKeyOpt = typer.Option(
    None,
    "--grant-key",
    help="The configuration server's grant key (PEM, `grant_key` of the registration "
    "answer): only disks it assigned are read or written.",
)


def _heartbeat(s: Any, health: Callable[[], dict[str, Any]]) -> None:
    """Start heartbeats if a configuration server is configured."""
    if not s.configuration_server:
        return
    from vmdr.roles.heartbeat import start_heartbeat

    if s.configuration_server_token_file is None or s.configuration_server_ca is None:
        raise UsageError(detail="--configuration-server needs --configuration-server-ca and "
                         "--configuration-server-token-file")  # fmt: skip
    token = _read_token(s.configuration_server_token_file)
    start_heartbeat(s.configuration_server, s.configuration_server_ca, token, health)


def _read_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise UsageError(detail=f"cannot read the token file {path}: {exc}") from exc


@app.command("master-target")
def master_target(
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
    host: str | None = HostOpt,
    port: int | None = PortOpt,
    ca_dir: Path | None = CaOpt,
    cert: Path | None = CertOpt,
    key: Path | None = KeyOpt,
    datastore: list[str] = typer.Option(
        [],
        "--datastore",
        help="NAME=PATH, repeatable: folders it may write files in.",
    ),
    by_id: Path | None = typer.Option(
        None, "--by-id", help="Where the disks attached to this VM appear (/dev/disk/by-id)."
    ),
    device_wait: float | None = typer.Option(
        None, help="How long an attached disk may take to appear (s, default 60)."
    ),
    retention_dir: Path | None = typer.Option(None, help="The retention drive's folder."),
    retention_hours: float | None = typer.Option(None, help="Retention window (default 24)."),
    retention_quota: str | None = typer.Option(None, help="Most the journals may use."),
    retention_min_free: str | None = typer.Option(None, help="Free space to keep (256M)."),
    stream_idle: float | None = typer.Option(
        None, help="Close a change set whose sender sends nothing this long (s, default 60)."
    ),
    configuration_server: str | None = CsOpt,
    configuration_server_ca: Path | None = CsCaOpt,
    configuration_server_token_file: Path | None = CsTokenOpt,
    grant_key: Path | None = GrantKeyOpt,
    log_level: str | None = LogOpt,
) -> None:
    """Receive replication data, journal it, write target disks, cut points."""
    from vmdr.blocks.retention import RetentionStore
    from vmdr.roles.byid import DeviceFolder
    from vmdr.roles.datastores import DatastoreRoots
    from vmdr.roles.master_target import MasterTargetSettings, build_app
    from vmdr.transport.grants import GrantVerifier

    try:
        s = MasterTargetOptions.load(config, dict(
            state_dir=state_dir, host=host, port=port, ca_dir=ca_dir, cert=cert, key=key,
            datastore=datastore, by_id=by_id, device_wait=device_wait,
            retention_dir=retention_dir, retention_hours=retention_hours,
            retention_quota=retention_quota, retention_min_free=retention_min_free,
            stream_idle=stream_idle, configuration_server=configuration_server,
            configuration_server_ca=configuration_server_ca,
            configuration_server_token_file=configuration_server_token_file,
            grant_key=grant_key, log_level=log_level,
        ))  # fmt: skip
        grants = GrantVerifier.load(s.grant_key)
        roots = DatastoreRoots.parse(s.datastore)
        retention = RetentionStore(
            s.retention_dir,
            window=timedelta(hours=s.retention_hours),
            quota_bytes=s.retention_quota,
            min_free_bytes=s.retention_min_free or 256 << 20,  # 0 is not "no guard"
        )
        _heartbeat(s, lambda: {"retention": retention.usage(), "datastores": roots.names()})
    except VmdrError as exc:
        fail(exc)
    threading.Thread(target=_prune_forever, args=(retention,), daemon=True).start()
    settings = MasterTargetSettings(roots, retention, s.state_dir, grants, s.stream_idle,
                                    DeviceFolder(s.by_id), s.device_wait)  # fmt: skip
    _run("master-target", s, lambda tokens: build_app(settings, tokens))


def _prune_forever(retention: Any) -> None:
    while True:
        try:
            retention.prune(time.time())
        except VmdrError as exc:  # reported, retried: pruning is housekeeping
            sys.stderr.write(f"prune: {exc}\n")
        time.sleep(60)


@app.command("process-server")
def process_server(
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
    host: str | None = HostOpt,
    port: int | None = PortOpt,
    ca_dir: Path | None = CaOpt,
    cert: Path | None = CertOpt,
    key: Path | None = KeyOpt,
    cache_dir: Path | None = typer.Option(
        None, help="Outgoing change sets (default <state>/cache)."
    ),
    master_target: str | None = typer.Option(None, help="https://HOST:PORT of the master target."),
    master_target_ca: Path | None = typer.Option(None, help="CA file the master target uses."),
    master_target_token_file: Path | None = typer.Option(None, help="File holding our token."),
    bandwidth: str | None = typer.Option(None, help="Limit, bytes/s (e.g. 50M); 0 = none."),
    cache_limit: str | None = typer.Option(None, help="Most the cache may hold."),
    compress: bool | None = typer.Option(None, "--compress/--no-compress"),
    configuration_server: str | None = CsOpt,
    configuration_server_ca: Path | None = CsCaOpt,
    configuration_server_token_file: Path | None = CsTokenOpt,
    grant_key: Path | None = GrantKeyOpt,
    log_level: str | None = LogOpt,
) -> None:
    """Read source disks and replicate them to a master target."""
    from vmdr.roles.process_server import ProcessServerSettings, build_app
    from vmdr.transport.grants import GrantVerifier

    try:
        s = ProcessServerOptions.load(config, dict(
            state_dir=state_dir, host=host, port=port, ca_dir=ca_dir, cert=cert, key=key,
            cache_dir=cache_dir,
            master_target=master_target, master_target_ca=master_target_ca,
            master_target_token_file=master_target_token_file, bandwidth=bandwidth,
            cache_limit=cache_limit, compress=compress,
            configuration_server=configuration_server,
            configuration_server_ca=configuration_server_ca,
            configuration_server_token_file=configuration_server_token_file,
            grant_key=grant_key, log_level=log_level,
        ))  # fmt: skip
        settings = ProcessServerSettings(
            state_dir=s.state_dir,
            cache_dir=s.cache_dir or s.state_dir / "cache",
            master_target_url=s.master_target,
            master_target_ca=s.master_target_ca,
            master_target_token=_read_token(s.master_target_token_file),
            grants=GrantVerifier.load(s.grant_key),
            bandwidth=s.bandwidth or 0,
            cache_limit=s.cache_limit,
            compress=s.compress,
        )
    except VmdrError as exc:
        fail(exc)

    def build(tokens: Any) -> Any:
        app_ = build_app(settings, tokens)
        ps = app_.state.process_server
        _heartbeat(
            s,
            lambda: {
                "replications": ps.all(),
                "bandwidth": settings.bandwidth,
                "master_target": ps.master_target_status(),
            },
        )
        return app_

    _run("process-server", s, build)


@app.command("configuration-server")
def configuration_server(
    config: Path | None = ConfigOpt,
    state_dir: Path | None = StateOpt,
    host: str | None = HostOpt,
    port: int | None = PortOpt,
    ca_dir: Path | None = CaOpt,
    cert: Path | None = CertOpt,
    key: Path | None = KeyOpt,
    database: str | None = typer.Option(
        None, help="SQLAlchemy URL (default: SQLite in the state folder)."
    ),
    worker: bool | None = typer.Option(
        None,
        "--worker/--no-worker",
        help="Run jobs in this process too (default; always with SQLite). With PostgreSQL, "
        "--no-worker makes an API replica beside `vmdr serve worker` processes.",
    ),
    log_level: str | None = LogOpt,
) -> None:
    """The inventory database, discovery and jobs, behind a REST API."""
    from vmdr.control.api import build_app
    from vmdr.control.server import ConfigServerSettings

    try:
        s = ConfigServerOptions.load(config, dict(
            state_dir=state_dir, host=host, port=port, ca_dir=ca_dir, cert=cert, key=key,
            database=database,
            worker=worker, log_level=log_level,
        ))  # fmt: skip
        settings = ConfigServerSettings(s.state_dir, s.database, worker=s.worker)
    except VmdrError as exc:
        fail(exc)
    from vmdr.web.dashboard import Dashboard

    _run("configuration-server", s, lambda tokens: build_app(settings, tokens, Dashboard()))


@app.command("worker")
def worker(
    config: Path | None = ConfigOpt,
    state_dir: Path | None = typer.Option(
        None,
        "--state-dir",
        help="Its id, the data-plane file, the credentials key and scripts/ (as the "
        "configuration server's own folder has them).",
    ),
    database: str | None = typer.Option(
        None, help="The configuration server's PostgreSQL URL (SQLAlchemy form)."
    ),
    log_level: str | None = LogOpt,
) -> None:
    """Run jobs: workflow steps from the shared database, beside any number
    of other workers (PostgreSQL). A dead worker's jobs move to the others
    within a minute; this one resumes its own when restarted."""
    import logging
    import signal

    from vmdr.control.server import ConfigServer, ConfigServerSettings

    try:
        s = WorkerOptions.load(config, dict(state_dir=state_dir, database=database,
                                            log_level=log_level))  # fmt: skip
        url = s.database
        if url.startswith("sqlite"):
            raise UsageError(
                detail="a separate worker needs PostgreSQL: with SQLite the configuration "
                "server runs the jobs itself"
            )
        state = s.state_dir
        state.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(level=s.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
        cs = ConfigServer(ConfigServerSettings(state, url))
        cs.start_worker()
    except VmdrError as exc:
        fail(exc)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sys.stdout.write(json.dumps({"service": "worker", "id": cs.lease.worker_id if cs.lease
                                 else None, "state": str(state)}) + "\n")  # fmt: skip
    sys.stdout.flush()
    stop.wait()
    cs.stop_worker()
    # Steps still running after the wait belong to the worker that takes
    # over now: this process ends them by ending.
    sys.stdout.flush()
    os._exit(0)
