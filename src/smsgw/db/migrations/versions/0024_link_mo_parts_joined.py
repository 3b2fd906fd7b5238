"""link MO parts joined: the parts of a long SMS are kept a while after it was joined

`link_mo_parts.joined_at` is when the parts' SMS went to the inbox (NULL while a part waits
for the rest, as every part did before this revision). Joined parts are kept as long as
parts wait for the rest, so that a part the carrier delivers again after the join is
dropped, not taken in as a second SMS (links/service.py `received`, docs/links.md
"Incoming SMS").

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from smsgw.db.base import UTCDateTime

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, as 0022: a downgrade leaves 0023's schema exactly.
def upgrade() -> None:
    op.add_column("link_mo_parts", sa.Column("joined_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    # Parts of SMS joined already would wait again, and be taken in again 30 minutes later.
    op.execute("DELETE FROM link_mo_parts WHERE joined_at IS NOT NULL")
    op.drop_column("link_mo_parts", "joined_at")
