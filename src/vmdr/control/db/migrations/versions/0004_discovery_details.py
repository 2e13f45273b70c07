"""discovery details: disk controller address and backing, VM datastores and
guest, datastore RDM support, a vCenter's datacenters and clusters, the master
target's VM and the datastores it lived on at registration

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("disks") as batch:
        batch.add_column(sa.Column("address", sa.String(16), nullable=True))
        batch.add_column(sa.Column("controller", sa.String(32), nullable=True))
        batch.add_column(sa.Column("backing", sa.String(16), nullable=False, server_default="flat"))
    with op.batch_alter_table("machines") as batch:
        batch.add_column(sa.Column("power_state", sa.String(16), nullable=True))
        batch.add_column(sa.Column("guest_full_name", sa.String(255), nullable=True))
        batch.add_column(sa.Column("annotation", sa.Text(), nullable=True))
        batch.add_column(sa.Column("datastores", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("datastores") as batch:
        batch.add_column(
            sa.Column("rdm_supported", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("vcenters") as batch:
        batch.add_column(sa.Column("topology", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("master_targets") as batch:
        batch.add_column(sa.Column("vm_name", sa.String(255), nullable=True))
        batch.add_column(sa.Column("vm_datastores_at_registration", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("master_targets") as batch:
        batch.drop_column("vm_datastores_at_registration")
        batch.drop_column("vm_name")
    with op.batch_alter_table("vcenters") as batch:
        batch.drop_column("topology")
    with op.batch_alter_table("datastores") as batch:
        batch.drop_column("rdm_supported")
    with op.batch_alter_table("machines") as batch:
        for column in ("datastores", "annotation", "guest_full_name", "power_state"):
            batch.drop_column(column)
    with op.batch_alter_table("disks") as batch:
        for column in ("backing", "controller", "address"):
            batch.drop_column(column)
