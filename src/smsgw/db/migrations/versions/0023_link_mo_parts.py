"""link MO parts: the parts of a long SMS a carrier delivers, kept until all are here

`link_mo_parts` holds each part of an SMS in parts (a concatenation header, or the sar_*
TLVs) that a carrier link received, until the last part joins them into one inbox message
(links/service.py `received`, docs/links.md "Incoming SMS").

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from smsgw.db.base import UTCDateTime

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "link_mo_parts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("sender", sa.String(length=32), nullable=False),
        sa.Column("reference", sa.Integer(), nullable=False),
        sa.Column("total", sa.SmallInteger(), nullable=False),
        sa.Column("seq", sa.SmallInteger(), nullable=False),
        sa.Column("data_coding", sa.SmallInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["links.device_id"], name=op.f("fk_link_mo_parts_device_id_links"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_mo_parts")),
    )  # fmt: skip
    op.create_index(
        op.f("ix_link_mo_parts_device_id_sender_reference_total_seq"), "link_mo_parts",
        ["device_id", "sender", "reference", "total", "seq"], unique=True,
    )  # fmt: skip
    op.create_index(op.f("ix_link_mo_parts_received_at"), "link_mo_parts", ["received_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_link_mo_parts_received_at"), table_name="link_mo_parts")
    op.drop_index(
        op.f("ix_link_mo_parts_device_id_sender_reference_total_seq"), table_name="link_mo_parts"
    )
    op.drop_table("link_mo_parts")
