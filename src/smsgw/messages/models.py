"""Tables for messages, their recipients and their state history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    column,
)
from sqlalchemy.orm import Mapped, mapped_column

from smsgw.db.base import Base, UTCDateTime


def _partial(*columns: str, where: str) -> Index:
    """An index of only the rows whose column `where` is set (SQLite and PostgreSQL)."""
    condition = column(where).is_not(None)
    return Index(None, *columns, sqlite_where=condition, postgresql_where=condition)


class Message(Base):
    """One accepted message.

    `device_id` is the phone it is pinned to (`pinned`) or that claimed it from the queue;
    `claimed_at` is when that phone first pulled it. `released_from` remembers the phone a
    claim was taken back from, so that phone is told to drop the message if it returns.
    """

    __tablename__ = "messages"
    # Storing a message is the hot path: a new message (unpinned, unclaimed, without
    # validUntil) is in the first three indexes only. The partial ones serve queries whose
    # WHERE implies theirs (`device_id = ?`, `claimed_at < ?`, `valid_until <= ?`); queries
    # on the queue itself (`state = 'Pending'`, with or without owner) use the state index.
    __table_args__ = (
        UniqueConstraint("user_id", "ext_id"),
        Index(None, "user_id", "created_at"),
        Index(None, "state", "user_id", "created_at"),
        _partial("user_id", "device_id", "created_at", where="device_id"),
        _partial("device_id", "state", where="device_id"),
        _partial("state", "claimed_at", where="claimed_at"),
        _partial("state", "valid_until", where="valid_until"),
        # Every pull of a phone asks which messages were taken back from it: few, ever.
        _partial("released_from", "user_id", where="released_from"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ext_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    released_from: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    text: Mapped[str | None] = mapped_column(Text)
    data: Mapped[str | None] = mapped_column(Text)
    port: Mapped[int | None] = mapped_column(Integer)
    is_encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    is_hashed: Mapped[bool] = mapped_column(Boolean, default=False)
    sim_number: Mapped[int | None] = mapped_column(SmallInteger)
    with_delivery_report: Mapped[bool] = mapped_column(Boolean, default=True)
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    schedule_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Recipient(Base):
    """One phone number of a message, with its own state and error."""

    __tablename__ = "recipients"
    __table_args__ = (UniqueConstraint("message_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(SmallInteger)
    phone_number: Mapped[str] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(256))


class MessageStateEntry(Base):
    """When a message first reached a state (the first timestamp per state wins)."""

    __tablename__ = "message_states"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
