"""Fixtures shared by every test layer.

Functional and end-to-end tests talk to real components only: the lab's vCenter
simulator, Azurite and BIND are started once per test session by ``lab`` and
stopped (by pid) when the session ends.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import running_lab
from vmdr.lab.lab import Lab


@pytest.fixture(scope="session")
def session_lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    """A running, populated lab for the whole test session."""
    with running_lab(tmp_path_factory.mktemp("lab"), request.session) as lab:
        yield lab


@pytest.fixture
def lab(session_lab: Lab) -> Lab:
    """The session's lab, checked before each test that uses it: a service
    that ended since the test before fails this one with how it ended and
    the tail of its log, rather than with a "connection refused" far from
    the cause."""
    down = [s for s in session_lab.status() if s.state != "up"]
    if down:
        pytest.fail("the session's lab lost " + "; ".join(_ending(s) for s in down))
    return session_lab


def _ending(status: Any) -> str:
    """How a lab service ended (it is a child of this process) and its log's tail."""
    try:
        pid, code = os.waitpid(status.pid, os.WNOHANG)
        how = (f"killed by signal {os.WTERMSIG(code)}" if os.WIFSIGNALED(code)
               else f"exited with {os.WEXITSTATUS(code)}") if pid else "still running"  # fmt: skip
    except ChildProcessError:
        how = "ended (not this process's child)"
    try:
        tail = Path(status.log).read_text(errors="replace")[-3000:]
    except OSError as exc:
        tail = f"(no log: {exc})"
    return f"{status.name} (pid {status.pid}, {status.state}): {how}\n{tail}"


@pytest.fixture(scope="session")
def lab_inventory(session_lab: Lab) -> dict:  # type: ignore[type-arg]
    from vmdr.lab.state import load_inventory

    return load_inventory(session_lab.directory)


@pytest.fixture(scope="session")
def account(session_lab: Lab) -> Iterator[str]:
    """The lab's storage account, with VMDR_STORAGE_ACCOUNTS pointing at its key."""
    from vmdr.lab.services import STORAGE_ACCOUNTS_FILE

    old = os.environ.get("VMDR_STORAGE_ACCOUNTS")
    os.environ["VMDR_STORAGE_ACCOUNTS"] = str(session_lab.directory / STORAGE_ACCOUNTS_FILE)
    yield session_lab.credentials()["azurite"]["account"]
    if old is None:
        del os.environ["VMDR_STORAGE_ACCOUNTS"]
    else:
        os.environ["VMDR_STORAGE_ACCOUNTS"] = old


@pytest.fixture
def artifacts_dir() -> Path:
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed: run `make bootstrap`")
    return found[-1].parent


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private PostgreSQL server from Debian's packages: its own data folder,
    socket folder and port, trust auth on the socket only; stopped at the end.
    PostgreSQL refuses to run as root, so as root it runs as ``postgres``."""
    import shutil
    import subprocess

    from vmdr.lab.process import free_port

    base = tmp_path_factory.mktemp("pg")
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        base.chmod(0o755)
        for parent in base.parents:  # postgres must be able to reach its folder
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o011)
    bin_dir = _pg_bin()
    port = free_port()
    subprocess.run(
        [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "vmdr", "--auth=trust",
         "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "pg.log"),
         "-o", f"-p {port} -k {sock} -c listen_addresses='' -c fsync=off", "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        subprocess.run(
            [*run_as, str(bin_dir.parent / "bin" / "createdb"), "-h", str(sock), "-p", str(port),
             "-U", "vmdr", "vmdr"],
            check=True, capture_output=True,
        )  # fmt: skip
        yield f"postgresql+psycopg://vmdr@/vmdr?host={sock}&port={port}"
    finally:
        subprocess.run(
            [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
        )  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs on both databases (a fresh one each)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'vmdr.db'}"
    url: str = request.getfixturevalue("postgres_url")
    import sqlalchemy

    # A fresh schema per test: drop everything the previous test made.
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        conn.execute(sqlalchemy.text("DROP SCHEMA IF EXISTS dbos CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def small_drive(tmp_path: Path) -> Iterator[Any]:
    """``small_drive(size)``: a folder on a tmpfs of ``size`` bytes, a real
    file system that fills up (short writes, then ENOSPC); unmounted after
    the test. Needs root (CAP_SYS_ADMIN), as ``make test`` runs."""
    mounted: list[Path] = []

    def make(size: int) -> Path:
        where = tmp_path / f"drive-{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                               str(where)], capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, f"cannot mount a tmpfs (run as root): {done.stderr}"
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)
