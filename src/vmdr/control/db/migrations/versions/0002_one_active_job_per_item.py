"""one queued or running job per protected item

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ACTIVE_JOB = "state IN ('queued', 'running')"


def upgrade() -> None:
    op.create_index(
        "uq_jobs_active_item",
        "jobs",
        ["item_id"],
        unique=True,
        sqlite_where=sa.text(ACTIVE_JOB),
        postgresql_where=sa.text(ACTIVE_JOB),
    )


def downgrade() -> None:
    op.drop_index("uq_jobs_active_item", table_name="jobs")
