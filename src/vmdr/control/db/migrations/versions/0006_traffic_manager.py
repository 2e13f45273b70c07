"""traffic manager: profiles, endpoints, routing events

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "traffic_profiles",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("dns_name", sa.String(255), nullable=False),
        sa.Column("ttl", sa.Integer(), nullable=False),
        sa.Column("routing", sa.String(16), nullable=False),
        sa.Column("item_id", sa.String(36), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("published", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "traffic_endpoints",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "profile_id",
            sa.String(36),
            sa.ForeignKey("traffic_profiles.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("site", sa.String(16), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("probe", sa.JSON(), nullable=True),
        sa.Column("healthy", sa.Boolean(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("probed_at", sa.Float(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.UniqueConstraint("profile_id", "name"),
    )
    op.create_table(
        "routing_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "profile_id",
            sa.String(36),
            sa.ForeignKey("traffic_profiles.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
    )
    op.create_index("ix_routing_events_profile_id", "routing_events", ["profile_id"])


def downgrade() -> None:
    op.drop_index("ix_routing_events_profile_id", "routing_events")
    op.drop_table("routing_events")
    op.drop_table("traffic_endpoints")
    op.drop_table("traffic_profiles")
