"""The batches table (a bulk send of the dashboard) and batch_items (its rows)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from smsgw.db.base import Base, UTCDateTime


class Batch(Base):
    """One bulk send. `state`: `preview` (uploaded and checked, waiting for the owner's
    confirmation until `expires_at`), `sending` (its rows are being queued, by the server
    process holding the lease until `lease_until`), `done` (every row queued or refused).

    `total` counts the rows to send, `invalid` those that failed validation, `blank` the
    blank rows of the file, `parts` the SMS parts of all texts; `accepted` and `failed`
    count the rows queued and refused so far. The send options apply to every row.
    """

    __tablename__ = "batches"
    __table_args__ = (Index(None, "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))
    file_name: Mapped[str] = mapped_column(String(255))
    template: Mapped[str] = mapped_column(Text)
    device_id: Mapped[str | None] = mapped_column(String(32))
    sim_number: Mapped[int | None] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer)
    with_delivery_report: Mapped[bool] = mapped_column(Boolean)
    total: Mapped[int] = mapped_column(Integer)
    invalid: Mapped[int] = mapped_column(Integer)
    blank: Mapped[int] = mapped_column(Integer)
    parts: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BatchItem(Base):
    """A row of a batch's file, in file order (`position`). `state`: `invalid` (failed
    validation: `error` says why), `waiting` (to be queued as message `message_id`, an id
    chosen in advance, so that a row queued again after a crash is refused as a duplicate
    rather than sent twice), `accepted` (queued), `refused` (the send refused it: `error`)."""

    __tablename__ = "batch_items"
    __table_args__ = (Index(None, "batch_id", "state", "position"),)

    batch_id: Mapped[str] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    row: Mapped[int] = mapped_column(Integer)
    phone: Mapped[str] = mapped_column(String(128))
    text: Mapped[str | None] = mapped_column(Text)
    parts: Mapped[int] = mapped_column(Integer)
    message_id: Mapped[str | None] = mapped_column(String(36))
    state: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
