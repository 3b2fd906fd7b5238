"""link bind mode: how a carrier link binds to its SMSC

`links.bind_mode` is `transceiver` (one session that submits and receives; every link added
before this revision) or `tx_rx` (a transmitter session for submit_sm and a receiver session
for what the SMSC delivers; links/session.py, docs/links.md "Bind mode").

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, as 0009 and 0015: SQLite 3.35+ drops the column in place, so that a
# downgrade leaves 0020's schema exactly.
def upgrade() -> None:
    op.add_column(
        "links",
        sa.Column(
            "bind_mode", sa.String(length=16), nullable=False,
            server_default=sa.text("'transceiver'"),
        ),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_column("links", "bind_mode")
