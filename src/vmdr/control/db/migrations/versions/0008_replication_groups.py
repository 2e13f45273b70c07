"""replication groups: items whose recovery points are cut together

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replication_groups",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("quiesce", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("recovery_points") as batch:
        batch.add_column(sa.Column("group_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("group_seq", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recovery_points") as batch:
        batch.drop_column("group_seq")
        batch.drop_column("group_id")
    op.drop_table("replication_groups")
