"""a vCenter's or ESX host's pinned certificate fingerprint (SHA-256), for
one without a CA certificate: TLS is never left unchecked

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vcenters") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vcenters") as batch:
        batch.drop_column("fingerprint")
