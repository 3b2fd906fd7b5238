"""inbox MMS and exports: MMS columns and raw payloads on inbox, attachments, inbox exports

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from smsgw.db.base import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject", sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column("transaction_id", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("content_class", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("size", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("payload", sa.JSON(), nullable=True))

    op.create_table(
        "inbox_attachments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("inbox_pk", sa.Integer(), nullable=False),
        sa.Column("part_id", sa.Integer(), nullable=False),
        sa.Column("content_type", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["inbox_pk"],
            ["inbox.id"],
            name=op.f("fk_inbox_attachments_inbox_pk_inbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_attachments")),
        sa.UniqueConstraint(
            "inbox_pk", "part_id", name=op.f("uq_inbox_attachments_inbox_pk_part_id")
        ),
    )

    op.create_table(
        "inbox_exports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("until", UTCDateTime(), nullable=False),
        sa.Column("types", sa.String(length=64), nullable=False),
        sa.Column("delivery", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=True),
        sa.Column("last_activity_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_inbox_exports_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_inbox_exports_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_exports")),
    )
    with op.batch_alter_table("inbox_exports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inbox_exports_device_id_state"), ["device_id", "state"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_inbox_exports_state_last_activity_at"),
            ["state", "last_activity_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("inbox_exports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbox_exports_state_last_activity_at"))
        batch_op.drop_index(batch_op.f("ix_inbox_exports_device_id_state"))

    op.drop_table("inbox_exports")
    op.drop_table("inbox_attachments")
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_column("payload")
        batch_op.drop_column("size")
        batch_op.drop_column("content_class")
        batch_op.drop_column("transaction_id")
        batch_op.drop_column("subject")
