"""Tables for messages, their recipients and their state history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    column,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import UnaryExpression

from smsgw.db.base import Base, UTCDateTime


def _partial(*columns: str, where: str) -> Index:
    """An index of only the rows whose column `where` is set (SQLite and PostgreSQL)."""
    condition = column(where).is_not(None)
    return Index(None, *columns, sqlite_where=condition, postgresql_where=condition)


#: The queue a phone claims from: an owner's unclaimed Pending messages (the claim's WHERE
#: says this with literals, so that PostgreSQL's generic plans use these indexes too).
QUEUED = "state = 'Pending' AND device_id IS NULL"
#: Pinned messages their phone has not taken yet (the worker wakes their phones).
UNTAKEN = "state = 'Pending' AND device_id IS NOT NULL AND claimed_at IS NULL"


class NullsFirst(UnaryExpression[Any]):
    """An index key whose NULLs sort first: `NULLS FIRST` on PostgreSQL; SQLite sorts NULLs
    first by itself and refuses the words in an index."""

    inherit_cache = True

    def __init__(self, name: str) -> None:
        super().__init__(column(name))


@compiles(NullsFirst)
def _nulls_first(element: NullsFirst, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.element, **kw))


@compiles(NullsFirst, "postgresql")
def _nulls_first_postgresql(element: NullsFirst, compiler: Any, **kw: Any) -> str:
    return f"{compiler.process(element.element, **kw)} NULLS FIRST"


def _pull_order(name: str, newest_first: bool) -> Index:
    """An index of the queue in the order of a pull (routing/repository.py `_ORDER`), so a
    claim reads the messages it takes and no others, however long the queue."""
    later: list[Any] = [column("created_at"), column("id")]
    if newest_first:
        later = [key.desc() for key in later]
    condition = text(QUEUED)
    return Index(
        name, "user_id", NullsFirst("schedule_at"), column("priority").desc(), *later,
        sqlite_where=condition, postgresql_where=condition,
    )  # fmt: skip


class Message(Base):
    """One accepted message.

    `device_id` is the phone it is pinned to (`pinned`) or that claimed it from the queue;
    `claimed_at` is when that phone first pulled it. `released_from` remembers the phone a
    claim was taken back from, so that phone is told to drop the message if it returns.
    """

    __tablename__ = "messages"
    # Storing a message is the hot path: a new message (unpinned, unclaimed, without
    # validUntil) is in the first three indexes and the two of the queue only. The partial
    # ones serve queries whose WHERE implies theirs (`device_id = ?`, `claimed_at < ?`,
    # `valid_until <= ?`, the queue's literals); lists by state use the state index.
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
        # A pull claims from one of these (lifo, the app's default, or fifo); only queued
        # messages are in them. Migration 0011.
        _pull_order("ix_messages_claimable_lifo", newest_first=True),
        _pull_order("ix_messages_claimable_fifo", newest_first=False),
        Index(
            "ix_messages_untaken",
            "device_id",
            "schedule_at",
            sqlite_where=text(UNTAKEN),
            postgresql_where=text(UNTAKEN),
        ),
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
    #: The SMS parts sending it takes: the text's parts (a data message: 1) times its
    #: recipients that are not opted out; what it costs its phone's budget (routing/budgets.py).
    #: (Migration 0015 gives the column a server default of 1 for the rows it found.)
    parts: Mapped[int] = mapped_column(Integer, default=1)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    schedule_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Recipient(Base):
    """One phone number of a message, with its own state and error."""

    __tablename__ = "recipients"
    # A conversation (conversations/) finds the messages to a number through the second.
    __table_args__ = (
        UniqueConstraint("message_id", "position"),
        Index(None, "phone_number", "message_id"),
    )

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


class MessageCount(Base):
    """How many of an owner's messages are in a state, per phone (`device_id` '' for none):
    what `X-Total-Count` reads instead of counting the messages.

    Triggers on `messages` (migration 0010) record every change as a row of
    MessageCountChange in the same transaction; the worker folds those rows into these
    (`messages.service.fold_counts`). The sum of `n` here and of the changes not yet folded
    is exact at any moment a transaction sees."""

    __tablename__ = "message_counts"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class MessageCountChange(Base):
    """One change of a count (+1 or -1), written by a trigger on `messages`: only inserts,
    so that writers on several nodes never wait for each other on a count's row."""

    __tablename__ = "message_count_changes"
    # What a count reads: the owner's changes, with state and phone, from the index alone.
    __table_args__ = (Index(None, "user_id", "state", "device_id", "change"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    user_id: Mapped[int] = mapped_column(Integer)
    device_id: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    change: Mapped[int] = mapped_column(SmallInteger)
