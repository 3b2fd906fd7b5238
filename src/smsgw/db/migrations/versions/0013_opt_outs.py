"""opt-outs: per account, the numbers that asked not to be texted any more

A recipient's stop word (STOP, ...) received by a phone adds its number; START removes it;
the API and the dashboard add and remove numbers too. A message to a listed number is
accepted, and that recipient fails with "recipient opted out".

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from smsgw.db.base import UTCDateTime

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "opt_outs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("phone_number", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_opt_outs_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_opt_outs")),
        sa.UniqueConstraint(
            "user_id", "phone_number", name=op.f("uq_opt_outs_user_id_phone_number")
        ),
    )


def downgrade() -> None:
    op.drop_table("opt_outs")
