"""carrier links: SMPP links to operators' SMSCs, senders beside phones

`links` holds a link's settings, its session's state and the lease of the server process
that runs it; its `devices` row (of the same id) makes it a sender that claims from the
owner's queue as phones do. `link_parts` holds each SMS part a link submits: planned,
submitted (the intent), the carrier's id and the outcome (docs/links.md).

Revision ID: 0019
Revises: 0014
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from smsgw.db.base import UTCDateTime

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "links",
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("system_id", sa.String(length=16), nullable=False),
        sa.Column("password", sa.String(length=16), nullable=False),
        sa.Column("system_type", sa.String(length=16), nullable=False),
        sa.Column("source_addr", sa.String(length=21), nullable=False),
        sa.Column("source_ton", sa.SmallInteger(), nullable=False),
        sa.Column("source_npi", sa.SmallInteger(), nullable=False),
        sa.Column("throughput", sa.Integer(), nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("data_coding", sa.SmallInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=256), nullable=True),
        sa.Column("state_at", UTCDateTime(), nullable=False),
        sa.Column("driver", sa.String(length=32), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_links_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_links")),
    )  # fmt: skip
    op.create_table(
        "link_parts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("phone_number", sa.String(length=512), nullable=False),
        sa.Column("part", sa.SmallInteger(), nullable=False),
        sa.Column("parts", sa.SmallInteger(), nullable=False),
        sa.Column("submitted_at", UTCDateTime(), nullable=True),
        sa.Column("smsc_id", sa.String(length=65), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("error", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["links.device_id"], name=op.f("fk_link_parts_device_id_links"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_link_parts_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_parts")),
    )  # fmt: skip
    op.create_index(
        op.f("ix_link_parts_device_id_outcome_id"), "link_parts", ["device_id", "outcome", "id"]
    )
    op.create_index(
        op.f("ix_link_parts_device_id_smsc_id"), "link_parts", ["device_id", "smsc_id"],
        sqlite_where=sa.text("smsc_id IS NOT NULL"),
        postgresql_where=sa.text("smsc_id IS NOT NULL"),
    )  # fmt: skip
    op.create_index(op.f("ix_link_parts_message_id"), "link_parts", ["message_id"])


def downgrade() -> None:
    op.drop_table("link_parts")
    op.drop_table("links")
