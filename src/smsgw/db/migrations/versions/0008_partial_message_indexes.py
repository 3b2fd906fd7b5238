"""partial message indexes: a new message is written to 3 indexes of messages instead of 7

(user_id, state, created_at) becomes (state, user_id, created_at), for the queue queries with
and without an owner; (device_id) becomes (device_id, state); the indexes on device_id,
claimed_at and valid_until keep only the rows where that column is set; a new partial index on
released_from serves the question every phone pull asks (which messages were taken back from
it), which read every message of the owner.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _set(column: str) -> dict[str, sa.ColumnElement[bool]]:
    """The WHERE of a partial index holding only the rows where `column` is set."""
    condition = sa.column(column).is_not(None)
    return {"sqlite_where": condition, "postgresql_where": condition}


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_device_id"))
        batch_op.drop_index(batch_op.f("ix_messages_user_id_state_created_at"))
        batch_op.drop_index(batch_op.f("ix_messages_user_id_device_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_messages_state_claimed_at"))
        batch_op.drop_index(batch_op.f("ix_messages_state_valid_until"))
        batch_op.create_index(
            batch_op.f("ix_messages_state_user_id_created_at"),
            ["state", "user_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_messages_user_id_device_id_created_at"),
            ["user_id", "device_id", "created_at"],
            unique=False,
            **_set("device_id"),
        )
        batch_op.create_index(
            batch_op.f("ix_messages_device_id_state"),
            ["device_id", "state"],
            unique=False,
            **_set("device_id"),
        )
        batch_op.create_index(
            batch_op.f("ix_messages_state_claimed_at"),
            ["state", "claimed_at"],
            unique=False,
            **_set("claimed_at"),
        )
        batch_op.create_index(
            batch_op.f("ix_messages_state_valid_until"),
            ["state", "valid_until"],
            unique=False,
            **_set("valid_until"),
        )
        batch_op.create_index(
            batch_op.f("ix_messages_released_from_user_id"),
            ["released_from", "user_id"],
            unique=False,
            **_set("released_from"),
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_released_from_user_id"))
        batch_op.drop_index(batch_op.f("ix_messages_state_valid_until"))
        batch_op.drop_index(batch_op.f("ix_messages_state_claimed_at"))
        batch_op.drop_index(batch_op.f("ix_messages_device_id_state"))
        batch_op.drop_index(batch_op.f("ix_messages_user_id_device_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_messages_state_user_id_created_at"))
        batch_op.create_index(
            batch_op.f("ix_messages_state_valid_until"), ["state", "valid_until"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_messages_state_claimed_at"), ["state", "claimed_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_messages_user_id_device_id_created_at"),
            ["user_id", "device_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_messages_user_id_state_created_at"),
            ["user_id", "state", "created_at"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_messages_device_id"), ["device_id"], unique=False)
