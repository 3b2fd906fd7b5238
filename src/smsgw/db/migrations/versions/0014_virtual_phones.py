"""virtual phones: phones that live inside smsgw, for development

`devices.virtual` marks them (false for every phone that exists); `virtual_phones` holds how
each one behaves (delay, outcome script, how far along the script it is) and the lease of
the server process that drives it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from smsgw.db.base import UTCDateTime

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, as 0009 (SQLite 3.35+ drops a column in place): a batch copy of
# `devices` would rewrite its stored definition.
def upgrade() -> None:
    op.add_column(
        "devices",
        sa.Column("virtual", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "virtual_phones",
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("delay_ms", sa.Integer(), nullable=False),
        sa.Column("script", sa.String(length=512), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("driver", sa.String(length=32), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_virtual_phones_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_virtual_phones")),
    )


def downgrade() -> None:
    op.drop_table("virtual_phones")
    op.drop_column("devices", "virtual")
