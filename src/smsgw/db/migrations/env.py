"""Alembic environment: runs migrations on a synchronous connection handed in by smsgw."""

from __future__ import annotations

from alembic import context

from smsgw.db.tables import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("smsgw runs its migrations through smsgw.db.migrate, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
