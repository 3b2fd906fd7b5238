"""The inbox table: one row per message a phone received, deduplicated per owner."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from smsgw.db.base import Base, UTCDateTime


class InboxMessage(Base):
    """A received SMS (`text`) or data SMS (`data`, base64).

    `dedupe_key` is (phone, type, the phone's content-derived `messageId`): the same message
    posted live and replayed by an inbox export is stored once.
    """

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("user_id", "dedupe_key"),
        Index(None, "user_id", "received_at"),
        Index(None, "user_id", "device_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ext_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    dedupe_key: Mapped[str] = mapped_column(String(256))
    type: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str] = mapped_column(String(128))
    sender: Mapped[str | None] = mapped_column(String(128))
    recipient: Mapped[str | None] = mapped_column(String(128))
    sim_number: Mapped[int | None] = mapped_column(SmallInteger)
    text: Mapped[str | None] = mapped_column(Text)
    data: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
