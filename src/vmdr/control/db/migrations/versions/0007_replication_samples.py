"""replication_samples: RPO and bytes per replication cycle, for the dashboard

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replication_samples",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "item_id",
            sa.String(36),
            sa.ForeignKey("protected_items.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("direction", sa.String(32), nullable=False),
        sa.Column("rpo_seconds", sa.Float(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
    )
    op.create_index("ix_replication_samples_item_time", "replication_samples", ["item_id", "time"])


def downgrade() -> None:
    op.drop_index("ix_replication_samples_item_time", "replication_samples")
    op.drop_table("replication_samples")
