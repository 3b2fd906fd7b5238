"""Queries of account settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.accountsettings.models import AccountSettings
from smsgw.db.base import table_of
from smsgw.db.engine import ColumnReader, UnitConnection, upsert

documents = table_of(AccountSettings)


async def load(conn: AsyncConnection, user_id: int) -> dict[str, Any]:
    """The owner's stored document; `{}` when none was stored."""
    query = select(documents.c.document).where(documents.c.user_id == user_id)
    stored = (await conn.execute(query)).scalar_one_or_none()
    return dict(stored) if stored else {}


_DOCUMENT = f"SELECT document FROM {documents.name} WHERE user_id = ?"  # noqa: S608
_read_document = ColumnReader(documents.c.document)


async def load_unit(conn: UnitConnection, user_id: int) -> dict[str, Any]:
    """`load` in a unit of work."""
    row = (await conn.execute(_DOCUMENT, (user_id,))).fetchone()
    stored = None if row is None else _read_document(conn, row[0])
    return dict(stored) if stored else {}


async def store(
    conn: AsyncConnection, user_id: int, document: dict[str, Any], now: datetime
) -> None:
    values = {"user_id": user_id, "document": document, "updated_at": now}
    query = upsert(conn, documents).values(values)
    await conn.execute(
        query.on_conflict_do_update(
            index_elements=[documents.c.user_id],
            set_={"document": query.excluded.document, "updated_at": now},
        )
    )
