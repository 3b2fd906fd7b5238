"""conversation indexes: the messages to a phone number, and what a number sent

A conversation (the dashboard's thread per phone number, conversations/) reads the
recipients with one number, then their messages by key (recipients by phone_number and
message_id), and the inbox rows of one owner from one sender, newest first (inbox by
user_id, sender and received_at). Without them, a thread read every row of both tables.

Revision ID: 0018
Revises: 0014
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, columns) of the new indexes; named as the models' naming convention names them.
INDEXES = [
    ("recipients", ["phone_number", "message_id"]),
    ("inbox", ["user_id", "sender", "received_at"]),
]


def _name(table: str, columns: list[str]) -> str:
    return f"ix_{table}_" + "_".join(columns)


# Plain CREATE INDEX on both engines (no batch copy: the tables keep their definitions and,
# on SQLite, the triggers of 0010 on `messages` are not touched).
def upgrade() -> None:
    for table, columns in INDEXES:
        op.create_index(op.f(_name(table, columns)), table, columns, unique=False)


def downgrade() -> None:
    for table, columns in reversed(INDEXES):
        op.drop_index(op.f(_name(table, columns)), table_name=table)
