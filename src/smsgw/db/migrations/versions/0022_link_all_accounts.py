"""links for all accounts: a carrier link the operator shares with every account

`links.all_accounts` is false for a link of one account (every link added before this
revision) and true for a link the operator added for all accounts (`smsgw links add smpp
--all-accounts`): it claims the queued messages of every account, each under that
account's routing rule (docs/links.md "A link for all accounts").

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, as 0021: a downgrade leaves 0021's schema exactly.
def upgrade() -> None:
    op.add_column(
        "links",
        sa.Column("all_accounts", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("links", "all_accounts")
