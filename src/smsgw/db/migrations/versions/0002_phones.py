"""phones: one-time codes, claim release, sweep indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from smsgw.db.base import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_codes_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_user_codes")),
    )
    with op.batch_alter_table("user_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_codes_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_user_codes_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("released_from", sa.String(length=32), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_messages_state_claimed_at"), ["state", "claimed_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_messages_state_valid_until"), ["state", "valid_until"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_state_valid_until"))
        batch_op.drop_index(batch_op.f("ix_messages_state_claimed_at"))
        batch_op.drop_column("released_from")

    with op.batch_alter_table("user_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_codes_user_id"))
        batch_op.drop_index(batch_op.f("ix_user_codes_expires_at"))

    op.drop_table("user_codes")
