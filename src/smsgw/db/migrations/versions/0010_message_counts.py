"""message counts: X-Total-Count without counting the messages

`message_counts` holds how many of an owner's messages are in each state, per phone;
triggers on `messages` record every insert, change of state, phone or owner, and delete as
a row of `message_count_changes` (+1 / -1) in the writing transaction, which the worker
folds into the counts. Existing messages are counted once here.

A later migration that rebuilds `messages` on SQLite (a batch operation copies the table)
drops its triggers: it must create them again (`create_triggers`).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANGES = "INSERT INTO message_count_changes (user_id, device_id, state, change) VALUES "
OLD = "(OLD.user_id, coalesce(OLD.device_id, ''), OLD.state, -1)"
NEW = "(NEW.user_id, coalesce(NEW.device_id, ''), NEW.state, 1)"

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER message_counts_insert AFTER INSERT ON messages
    BEGIN {CHANGES}{NEW}; END""",
    f"""CREATE TRIGGER message_counts_update AFTER UPDATE OF user_id, device_id, state
    ON messages
    WHEN OLD.state IS NOT NEW.state OR OLD.device_id IS NOT NEW.device_id
        OR OLD.user_id IS NOT NEW.user_id
    BEGIN {CHANGES}{OLD}, {NEW}; END""",
    f"""CREATE TRIGGER message_counts_delete AFTER DELETE ON messages
    BEGIN {CHANGES}{OLD}; END""",
]
POSTGRESQL_TRIGGERS = [
    f"""CREATE FUNCTION message_counts_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            {CHANGES}{NEW};
        ELSIF TG_OP = 'UPDATE' THEN
            {CHANGES}{OLD}, {NEW};
        ELSE
            {CHANGES}{OLD};
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER message_counts_insert_delete AFTER INSERT OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION message_counts_change()""",
    """CREATE TRIGGER message_counts_update AFTER UPDATE OF user_id, device_id, state
    ON messages FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.device_id IS DISTINCT FROM NEW.device_id
        OR OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION message_counts_change()""",
]


def create_triggers() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_TRIGGERS if sqlite else POSTGRESQL_TRIGGERS:
        op.execute(statement)


def upgrade() -> None:
    op.create_table(
        "message_counts",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "device_id", "state", name=op.f("pk_message_counts")),
    )
    op.create_table(
        "message_count_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("change", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_count_changes")),
    )
    op.create_index(
        op.f("ix_message_count_changes_user_id_state_device_id_change"),
        "message_count_changes",
        ["user_id", "state", "device_id", "change"],
        unique=False,
    )
    op.execute(
        "INSERT INTO message_counts (user_id, device_id, state, n) "
        "SELECT user_id, coalesce(device_id, ''), state, count(*) FROM messages "
        "GROUP BY user_id, coalesce(device_id, ''), state"
    )
    create_triggers()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER message_counts_{name}")
    else:
        op.execute("DROP TRIGGER message_counts_update ON messages")
        op.execute("DROP TRIGGER message_counts_insert_delete ON messages")
        op.execute("DROP FUNCTION message_counts_change()")
    op.drop_index(
        op.f("ix_message_count_changes_user_id_state_device_id_change"),
        table_name="message_count_changes",
    )
    op.drop_table("message_count_changes")
    op.drop_table("message_counts")
