"""phone budgets: SMS parts a phone is handed per minute and per day

`messages.parts` is what a message costs its phone (the text's parts times its recipients;
the messages still waiting for a phone count their recipients here, others keep 1: no
phone takes them again);
`devices.parts_per_minute` and `parts_per_day` are a phone's own limits (NULL: the server's
default); `phone_usage` counts what each phone was handed in the current minute and day.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, as 0009 and 0014: a batch copy of `messages` would drop 0010's triggers.
def upgrade() -> None:
    op.add_column(
        "messages", sa.Column("parts", sa.Integer(), nullable=False, server_default=sa.text("1"))
    )
    op.add_column("devices", sa.Column("parts_per_minute", sa.Integer(), nullable=True))
    op.add_column("devices", sa.Column("parts_per_day", sa.Integer(), nullable=True))
    op.create_table(
        "phone_usage",
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("minute_parts", sa.Integer(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("day_parts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_phone_usage_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_phone_usage")),
    )
    _count_queued_parts()


def _count_queued_parts() -> None:
    """The messages still waiting for a phone (queued, or pinned and not taken) cost one part
    per recipient that is still to be sent to: the text's own parts are counted for messages
    accepted from now on (counting them needs the messages package, which db/ does not
    import), so a long text queued before the upgrade costs less than it takes."""
    op.execute(
        "UPDATE messages SET parts = (SELECT count(*) FROM recipients"
        " WHERE recipients.message_id = messages.id AND recipients.state = 'Pending')"
        " WHERE state = 'Pending' AND claimed_at IS NULL"
    )


def downgrade() -> None:
    op.drop_table("phone_usage")
    op.drop_column("devices", "parts_per_day")
    op.drop_column("devices", "parts_per_minute")
    op.drop_column("messages", "parts")
