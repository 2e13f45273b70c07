"""recovery_points: location (where the disk's state at the point is kept,
e.g. a page blob snapshot's URL)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recovery_points") as batch:
        batch.add_column(sa.Column("location", sa.String(2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recovery_points") as batch:
        batch.drop_column("location")
