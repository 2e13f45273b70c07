"""The CLI as a thin client of the configuration server's REST API.

Where the server is, first found wins:

1. ``VMDR_SERVER``, ``VMDR_TOKEN_FILE`` and ``VMDR_CA`` in the environment;
2. the file ``vmdr login`` wrote (``~/.config/vmdr/login.json``, mode 0600);
3. the lab in ``VMDR_LAB_DIR`` or ``./.vmdr-lab`` (its configuration server,
   admin token and CA) — so ``vmdr machines list`` works right after
   ``vmdr lab up``, without flags.

Lists print a table in a terminal, tab-separated lines in a pipe, and one
JSON document with ``--json``; errors carry their code and exit status.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from vmdr.blocks.durable import write_atomically
from vmdr.cli.output import console, emit_json, fail
from vmdr.model.errors import UsageError, VmdrError
from vmdr.transport.client import ServiceClient

LOGIN_FILE = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "vmdr/login.json"
JsonOption = typer.Option(False, "--json", help="Print one JSON document.")


class NoServer(VmdrError):
    code = "VMDR-E0550"
    exit_code = 2
    msg = "no configuration server is known to this CLI"
    fix = (
        "Start the lab (`vmdr lab up`), or `vmdr login --server URL --ca CA.pem "
        "--token-file FILE`, or set VMDR_SERVER, VMDR_TOKEN_FILE and VMDR_CA."
    )


def _from_lab() -> dict[str, str] | None:
    from vmdr.lab.state import LabState, load_credentials

    lab = Path(os.environ.get("VMDR_LAB_DIR", ".vmdr-lab")).resolve()
    state = LabState.load(lab)
    if state is None:
        return None
    try:
        record = state.service("configuration-server")
        token = load_credentials(lab)["configuration-server"]["token"]
    except (KeyError, LookupError, VmdrError):
        return None
    return {"server": record.url, "ca": record.details["ca"], "token": token}


def where() -> dict[str, str]:
    env = os.environ
    if env.get("VMDR_SERVER"):
        try:
            token = Path(env["VMDR_TOKEN_FILE"]).read_text().strip()
        except (KeyError, OSError) as exc:
            detail = f"VMDR_SERVER is set but VMDR_TOKEN_FILE is not usable: {exc}"
            raise UsageError(detail=detail) from exc
        return {"server": env["VMDR_SERVER"], "ca": env.get("VMDR_CA", ""), "token": token}
    if LOGIN_FILE.exists():
        data: dict[str, str] = json.loads(LOGIN_FILE.read_text())
        return data
    found = _from_lab()
    if found is None:
        raise NoServer()
    return found


def client() -> ServiceClient:
    w = where()
    if not w.get("ca"):
        raise UsageError(detail="the CA file of the configuration server is not known (VMDR_CA)")
    return ServiceClient("configuration server", w["server"], Path(w["ca"]), w["token"])


def call(method: str, path: str, as_json: bool, body: Any = None) -> Any:
    try:
        with client() as c:
            return (
                c.request(method, path, json=body) if body is not None else c.request(method, path)
            )
    except VmdrError as exc:
        fail(exc, as_json)


def show(rows: list[dict[str, Any]], columns: list[str], title: str, as_json: bool) -> None:
    if as_json:
        emit_json(rows)
        return
    cells = [[_text(r.get(c)) for c in columns] for r in rows]
    if not sys.stdout.isatty():
        for line in cells:
            sys.stdout.write("\t".join(line) + "\n")
        return
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for line in cells:
        table.add_row(*line)
    console.print(table)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return str(len(value))
    return str(value)


def login(
    server: str = typer.Option(..., help="https://HOST:PORT of the configuration server."),
    ca: Path = typer.Option(..., help="The CA file its certificate is issued by."),
    token_file: Path | None = typer.Option(None, help="A file holding a token (the admin's)."),
    user: str | None = typer.Option(
        None, help="Log in as this user (password from VMDR_PASSWORD, else asked)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Remember a configuration server for later commands (checks it first):
    as a user, with a session token that expires, or with a token file."""
    if (user is None) == (token_file is None):
        fail(UsageError(detail="give either --user or --token-file"), as_json)
    expires = None
    try:
        if user is not None:
            password = os.environ.get("VMDR_PASSWORD") or typer.prompt(
                f"password for {user}", hide_input=True
            )
            with ServiceClient("configuration server", server, ca) as anon:
                answer = anon.post("/v1/login", {"user": user, "password": password})
            token, expires = answer["token"], answer["expires_at"]
        else:
            assert token_file is not None
            token = token_file.read_text().strip()
        with ServiceClient("configuration server", server, ca, token) as c:
            c.get("/v1/sites")
    except OSError as exc:
        fail(UsageError(detail=f"cannot read {token_file}: {exc}"), as_json)
    except VmdrError as exc:
        fail(exc, as_json)
    LOGIN_FILE.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {"server": server, "ca": str(ca.resolve()), "token": token}
    write_atomically(LOGIN_FILE, json.dumps(data).encode())
    if as_json:
        emit_json({"server": server, "saved": str(LOGIN_FILE), "expires_at": expires})
    else:
        until = f", until {expires}" if expires else ""
        console.print(f"logged in to {server}{until}; saved in {LOGIN_FILE} (mode 0600)")


def lister(path: str, columns: list[str], title: str) -> Any:
    def command(as_json: bool = JsonOption) -> None:
        show(call("GET", path, as_json), columns, title, as_json)

    command.__doc__ = f"List {title}."
    return command


def add_commands(app: typer.Typer) -> None:
    app.command("login")(login)
    for name, path, columns in (
        ("sites", "/v1/sites", ["name", "role", "id"]),
        ("vcenters", "/v1/vcenters", ["name", "kind", "url", "discovered_at", "id"]),
        ("hosts", "/v1/hosts", ["name", "cluster", "id"]),
        ("datastores", "/v1/datastores", ["name", "type", "hosts", "id"]),
        ("machines", "/v1/machines",
         ["name", "kind", "guest_os", "enable_uuid", "snapshots", "disks", "id"]),
        ("process-servers", "/v1/process-servers", ["name", "url", "healthy", "heartbeat_at"]),
        ("master-targets", "/v1/master-targets", ["name", "url", "healthy", "heartbeat_at"]),
    ):  # fmt: skip
        group = typer.Typer(help=f"The {name} the configuration server knows.")
        group.command("list")(lister(path, columns, name))
        app.add_typer(group, name=name)
    server = typer.Typer(help="The configuration server itself: info, backup and restore.")

    @server.command("info")
    def info_cmd(as_json: bool = JsonOption) -> None:
        """What the server runs with: its database, its data plane (which cloud
        compute, storage account, process server and master target) and the
        public grant key its roles need (--grant-key)."""
        info = call("GET", "/v1/server/info", as_json)
        if as_json:
            emit_json(info)
            return
        plane = info["dataplane"]
        compute = plane.get("cloud_compute") or {}
        print(f"database         {info['database']}")
        if "error" in plane:
            print(f"data plane       {plane['error']['code']}: {plane['error']['message']}")
        else:
            print(f"data plane       {plane['path']}")
            print(f"cloud compute    {compute.get('driver', '-')}: {compute.get('where', '-')}")
            print(f"storage account  {plane['storage_account'] or '-'} ({plane['container']})")
            print(f"process server   {plane['process_server'] or '-'}")
            print(f"master target    {plane['master_target'] or '-'}")
        print(info["grant_key"], end="")

    @server.command("backup")
    def backup_cmd(
        file: Path,
        with_key: bool = typer.Option(
            False, "--with-key", help="Include the key that unseals stored credentials."
        ),
        as_json: bool = JsonOption,
    ) -> None:
        """Write a consistent, checksummed archive of the server while it runs."""
        try:
            with client() as c:
                data = c.fetch("/v1/server/backup", params={"with_key": str(with_key).lower()})
        except VmdrError as exc:
            fail(exc, as_json)
        write_atomically(file, data)
        if as_json:
            emit_json({"file": str(file), "bytes": len(data), "key_included": with_key})
        else:
            console.print(
                f"backup written to {file} ({len(data)} bytes, mode 0600), signed "
                "with the server's backup key (`vmdr server backup-key`)"
            )

    @server.command("backup-key")
    def backup_key_cmd(as_json: bool = JsonOption) -> None:
        """The key the server signs its backups with. Keep a copy apart from
        the archives: a restore onto a fresh server needs it."""
        try:
            with client() as c:
                key = c.get("/v1/server/backup-key")["key"]
        except VmdrError as exc:
            fail(exc, as_json)
        if as_json:
            emit_json({"key": key})
        else:
            print(key)

    @server.command("restore")
    def restore_cmd(
        file: Path,
        backup_key: Path | None = typer.Option(
            None, help="A file holding the backup key of the server that made the archive."
        ),
        allow_unsigned: bool = typer.Option(
            False, help="Accept an archive made before backups were signed."
        ),
        as_json: bool = JsonOption,
    ) -> None:
        """Load an archive into a fresh server (refused if it holds data)."""
        headers = {}
        try:
            if backup_key is not None:
                headers["X-Vmdr-Backup-Key"] = backup_key.read_text().strip()
            size = file.stat().st_size
        except OSError as exc:
            fail(UsageError(detail=f"cannot read {exc.filename}: {exc.strerror}"), as_json)

        def chunks() -> Iterator[bytes]:
            with file.open("rb") as f:
                yield from iter(lambda: f.read(1 << 20), b"")

        try:
            with client() as c:
                params = {"allow_unsigned": str(allow_unsigned).lower()}
                answer = c.upload("/v1/server/restore", chunks(), headers, params=params)
        except VmdrError as exc:
            fail(exc, as_json)
        if as_json:
            emit_json(answer)
        else:
            rows = sum(t["rows"] for t in answer["tables"].values())
            console.print(f"restored {rows} rows from {file} ({size} bytes)")

    app.add_typer(server, name="server")
