"""The Alembic migrations build exactly the schema the models describe, on
SQLite and on PostgreSQL: a column added to a model without a migration (or
the reverse) fails here, not in a user's upgrade."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from vmdr.control.db.engine import open_database
from vmdr.control.db.models import Base


def test_migrations_match_the_models(database_url: str) -> None:
    engine = open_database(database_url)  # migrates to head
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
