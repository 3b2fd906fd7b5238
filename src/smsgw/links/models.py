"""The links table (a carrier link's settings, state and lease) and link_parts (each SMS part
a link submits: intent, the carrier's id, the outcome)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    column,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from smsgw.db.base import Base, UTCDateTime


class Link(Base):
    """One row per carrier link; its `devices` row makes it a sender like a phone.

    `password` is stored as given: the server must send it to bind (a secret at rest,
    never shown or logged). `state` is what the link's worker last said of its session
    (`connecting`, `bound`, `down`), `detail` why; `driver` is the server process that
    holds the lease on running the link until `lease_until`.
    """

    __tablename__ = "links"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer)
    system_id: Mapped[str] = mapped_column(String(16))
    password: Mapped[str] = mapped_column(String(16))
    system_type: Mapped[str] = mapped_column(String(16))
    source_addr: Mapped[str] = mapped_column(String(21))
    source_ton: Mapped[int] = mapped_column(SmallInteger)
    source_npi: Mapped[int] = mapped_column(SmallInteger)
    #: submit_sm PDUs per second at most (as carriers contract).
    throughput: Mapped[int] = mapped_column(Integer)
    #: submit_sm PDUs awaiting their response at most.
    window: Mapped[int] = mapped_column(Integer)
    #: The alphabet of texts that fit it: 0 GSM 03.38, 1 IA5, 3 Latin-1 (others: UCS-2, 8).
    data_coding: Mapped[int] = mapped_column(SmallInteger)
    #: `transceiver` (one session) or `tx_rx` (a transmitter and a receiver session).
    bind_mode: Mapped[str] = mapped_column(String(16), server_default=text("'transceiver'"))
    #: A link the operator added for all accounts: it claims every account's queued
    #: messages (each under its own routing rule); its `devices` row's owner holds it.
    all_accounts: Mapped[bool] = mapped_column(Boolean, server_default=false())
    state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(256))
    state_at: Mapped[datetime] = mapped_column(UTCDateTime())
    driver: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LinkPart(Base):
    """One SMS part of one recipient of a message a link took.

    Planned when the link claims the message (`submitted_at` NULL); `submitted_at` is set
    before its submit_sm goes out (the intent, committed at most a window's worth of parts
    ahead; set back to NULL when the part was not sent after all), `smsc_id` and `outcome` when the
    carrier answers: `accepted`, `rejected`, `unknown` (no answer: it may have been sent),
    then `delivered` or `undelivered` from the receipt; `cancelled` when never sent.
    """

    __tablename__ = "link_parts"
    __table_args__ = (
        Index(None, "device_id", "outcome", "id"),
        Index(
            None,
            "device_id",
            "smsc_id",
            sqlite_where=column("smsc_id").is_not(None),
            postgresql_where=column("smsc_id").is_not(None),
        ),
        Index(None, "message_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("links.device_id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    phone_number: Mapped[str] = mapped_column(String(512))
    part: Mapped[int] = mapped_column(SmallInteger)
    parts: Mapped[int] = mapped_column(SmallInteger)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    smsc_id: Mapped[str | None] = mapped_column(String(65))
    outcome: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(256))


class LinkMoPart(Base):
    """One part of a long SMS the carrier delivered to a link (an MO in parts), kept until
    every part is here and the whole SMS goes to the inbox (links/service.py `received`),
    or until it waited too long and the parts here go as they are; then kept as joined
    (`joined_at`) for as long again, so that a part the carrier delivers again is told from
    the first part of another SMS.

    `reference`, `total` and `seq` come from the part's concatenation header (UDH) or its
    `sar_*` TLVs; `body` is its user data without the header; `data_coding` its own.
    """

    __tablename__ = "link_mo_parts"
    __table_args__ = (
        Index(None, "device_id", "sender", "reference", "total", "seq", unique=True),
        Index(None, "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("links.device_id", ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(32))
    reference: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(SmallInteger)
    seq: Mapped[int] = mapped_column(SmallInteger)
    data_coding: Mapped[int] = mapped_column(SmallInteger)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: When its SMS went to the inbox; NULL while the part waits for the rest.
    joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
