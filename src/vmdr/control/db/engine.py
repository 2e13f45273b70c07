"""Opening the database: SQLite by default (a file, WAL mode), PostgreSQL by
URL; the schema is brought up to date by Alembic migrations on open.

    open_database("sqlite:////var/lib/vmdr/cs/vmdr.db")
    open_database("postgresql+psycopg://vmdr@/vmdr?host=/run/postgresql")

SQLite gets ``journal_mode=WAL`` (readers never block the writer),
``foreign_keys=ON`` and a busy timeout, on every connection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from vmdr.model.errors import VmdrError

__all__ = ["DatabaseError", "head_revision", "open_database", "session_factory"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class DatabaseError(VmdrError):
    code = "VMDR-E0510"
    http_status = 503
    msg = "the database at {url} cannot be used: {detail}"
    fix = "Check the --database URL, that the server runs and that vmdr may write to it."


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(
        alembic_config(create_engine("sqlite://"))
    ).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def open_database(url: str, *, migrate: bool = True) -> Engine:
    """An engine for ``url`` with the schema at the newest migration."""
    safe = url.split("@")[-1] if "@" in url else url  # never log a password
    try:
        # A pool as large as the API's worker threads plus the job engine's,
        # so that a burst of requests waits for the database, not for a
        # connection (PostgreSQL's default max_connections is 100).
        pool = {} if url.startswith("sqlite") else {"pool_size": 20, "max_overflow": 30}
        engine = create_engine(url, pool_pre_ping=True, **pool)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        if migrate:
            command.upgrade(alembic_config(engine), "head")
    except VmdrError:
        raise
    except Exception as exc:  # the driver's own errors, for any backend
        raise DatabaseError(url=safe, detail=str(exc).splitlines()[0]) from exc
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
