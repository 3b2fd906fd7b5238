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


#: The partial indexes: (columns, the column a row must have set to be in the index).
PARTIAL = [
    (["user_id", "device_id", "created_at"], "device_id"),
    (["device_id", "state"], "device_id"),
    (["state", "claimed_at"], "claimed_at"),
    (["state", "valid_until"], "valid_until"),
    (["released_from", "user_id"], "released_from"),
]
#: The indexes before: all full; the first four were replaced by the partial ones above.
BEFORE = [
    ["device_id"],
    ["user_id", "state", "created_at"],
    ["user_id", "device_id", "created_at"],
    ["state", "claimed_at"],
    ["state", "valid_until"],
]


def _name(columns: list[str]) -> str:
    return "ix_messages_" + "_".join(columns)


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        for columns in BEFORE:
            batch_op.drop_index(batch_op.f(_name(columns)))
        batch_op.create_index(
            batch_op.f("ix_messages_state_user_id_created_at"),
            ["state", "user_id", "created_at"],
            unique=False,
        )
        for columns, column in PARTIAL:
            condition = sa.column(column).is_not(None)
            batch_op.create_index(
                batch_op.f(_name(columns)),
                columns,
                unique=False,
                sqlite_where=condition,
                postgresql_where=condition,
            )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        for columns, _ in reversed(PARTIAL):
            batch_op.drop_index(batch_op.f(_name(columns)))
        batch_op.drop_index(batch_op.f("ix_messages_state_user_id_created_at"))
        for columns in reversed(BEFORE):
            batch_op.create_index(batch_op.f(_name(columns)), columns, unique=False)
