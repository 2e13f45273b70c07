"""job engine: workers with leases, plan children, replication schedule, list indexes

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken_over_by", sa.String(128), nullable=True),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(36), nullable=True))
        batch.create_index("ix_jobs_parent_id", ["parent_id"])
        batch.create_index("ix_jobs_created_at", ["created_at"])
        batch.create_index("ix_jobs_updated_at", ["updated_at"])
        batch.create_index("ix_jobs_state_created_at", ["state", "created_at"])
    for table in ("protected_items", "replication_groups"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("cycle_anchor", sa.Float(), nullable=True))
            batch.create_index(f"ix_{table}_cycle_anchor", ["cycle_anchor"])
    # Items that replicate now are due at once (the scheduler used to decide
    # from their newest recovery point; from here on it reads this column).
    op.execute(
        "UPDATE protected_items SET cycle_anchor = 0 WHERE running IS NULL"
        " AND direction = 'primaryToRecovery' AND state IN ('Protected', 'TestFailoverCompleted')"
    )
    op.execute("UPDATE replication_groups SET cycle_anchor = 0")


def downgrade() -> None:
    for table in ("replication_groups", "protected_items"):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_cycle_anchor")
            batch.drop_column("cycle_anchor")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_state_created_at")
        batch.drop_index("ix_jobs_updated_at")
        batch.drop_index("ix_jobs_created_at")
        batch.drop_index("ix_jobs_parent_id")
        batch.drop_column("parent_id")
    op.drop_table("workers")
