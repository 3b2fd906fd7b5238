"""The inbox tables: received messages (deduplicated per owner), MMS parts, inbox exports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from smsgw.db.base import Base, UTCDateTime


class InboxMessage(Base):
    """A received SMS (`text`), data SMS (`data`, base64), MMS notification (`subject`,
    `transaction_id`, `content_class`, `size`) or downloaded MMS (`subject`, body in `text`,
    parts in `inbox_attachments`).

    `dedupe_key` is (phone, type, the phone's content-derived `messageId`): the same message
    posted live and replayed by an inbox export is stored once. `payload` is the event payload
    as the phone posted it, attachment data left out (it lives in `inbox_attachments`); NULL
    on rows stored before it was kept, which are rebuilt from the columns.
    """

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("user_id", "dedupe_key"),
        Index(None, "user_id", "received_at"),
        Index(None, "user_id", "device_id", "received_at"),
        # A conversation (conversations/): what a number sent, newest first.
        Index(None, "user_id", "sender", "received_at"),
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
    subject: Mapped[str | None] = mapped_column(String(256))
    transaction_id: Mapped[str | None] = mapped_column(String(128))
    content_class: Mapped[str | None] = mapped_column(String(32))
    size: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InboxAttachment(Base):
    """One part of a downloaded MMS; `data` is NULL when the phone did not send the bytes."""

    __tablename__ = "inbox_attachments"
    __table_args__ = (UniqueConstraint("inbox_pk", "part_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inbox_pk: Mapped[int] = mapped_column(ForeignKey("inbox.id", ondelete="CASCADE"))
    part_id: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(256))
    size: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)


class InboxExport(Base):
    """An accepted inbox refresh for one phone: open until the phone's replay has settled.

    `requested_at` is when the phone was sent `MessagesExportRequested` (NULL: not yet, it was
    offline); `last_activity_at` moves with each post of a message in range; `state` is
    `open`, `done` (closed, its events written), `expired` (no phone picked it up) or
    `failed` (closing kept failing: given up without events). Rows no longer open are pruned
    with the webhook events.
    """

    __tablename__ = "inbox_exports"
    __table_args__ = (Index(None, "state", "last_activity_at"), Index(None, "device_id", "state"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    until: Mapped[datetime] = mapped_column(UTCDateTime())
    types: Mapped[str] = mapped_column(String(64))
    delivery: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime())
