"""phone health: the latest health each phone reported with `system:ping`

One row per phone (gone with it), replaced by each ping: battery level and charging,
internet connection, transport and cellular type, failed messages in the last hour, and
when smsgw received it. The dashboard's overview shows them.

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from smsgw.db.base import UTCDateTime

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "phone_health",
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("reported_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=True),
        sa.Column("battery_level", sa.SmallInteger(), nullable=True),
        sa.Column("battery_charging", sa.SmallInteger(), nullable=True),
        sa.Column("connection_status", sa.SmallInteger(), nullable=True),
        sa.Column("transport", sa.SmallInteger(), nullable=True),
        sa.Column("cellular", sa.SmallInteger(), nullable=True),
        sa.Column("failed_last_hour", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_phone_health_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_phone_health")),
    )


def downgrade() -> None:
    op.drop_table("phone_health")
