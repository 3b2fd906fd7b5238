"""device app version: the version of SMS Gateway for Android each phone last reported

Phones name it in every request's User-Agent (`me.capcom.smsgateway/<version>`); smsgw keeps
the last one to hand each phone only the webhook events its app knows, and shows it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE (SQLite 3.35+ drops a column in place): a batch copy would rewrite the
# table's stored definition, and a downgrade would not restore 0008's schema exactly.
def upgrade() -> None:
    op.add_column("devices", sa.Column("app_version", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column("devices", "app_version")
