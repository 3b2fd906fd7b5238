"""routing rules: which of an account's senders (phones, carrier links) take which messages

`routing_rules` holds one row per account that set a rule (none: `shared`, as before): its
mode, the number prefixes of mode `prefix`, and the failover delay (routing/rules.py,
docs/links.md "Routing rules").

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from smsgw.db.base import UTCDateTime

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "routing_rules",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("prefixes", sa.Text(), nullable=False),
        sa.Column("failover_after", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_routing_rules_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_routing_rules")),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("routing_rules")
