"""The phone_usage table: how many SMS parts each phone was handed in the current minute and
day, for its budget (routing/budgets.py); and routing_rules: which of an account's senders,
phones or carrier links, may claim which of its queued messages (routing/rules.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from smsgw.db.base import Base, UTCDateTime


class PhoneUsage(Base):
    """One row per phone that was ever handed work, written by its pulls (under the phone's
    lock: one pull of a phone at a time across nodes) in the unit of work of the claim.

    `minute` and `day` are the window the counts belong to, as whole minutes and days since
    the Unix epoch (UTC); a count of an earlier window is read as 0."""

    __tablename__ = "phone_usage"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    minute: Mapped[int] = mapped_column(BigInteger)
    minute_parts: Mapped[int] = mapped_column(Integer)
    day: Mapped[int] = mapped_column(Integer)
    day_parts: Mapped[int] = mapped_column(Integer)


class RoutingRule(Base):
    """An account's routing rule (none: `shared`, every sender takes from the queue).

    `mode` is one of routing/rules.py `Mode`; `prefixes` the number prefixes of mode
    `prefix`, separated by spaces (such as `+44 +49`); `failover_after` the seconds a
    message waits before the other kind of sender may take it (0: never)."""

    __tablename__ = "routing_rules"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    mode: Mapped[str] = mapped_column(String(16))
    prefixes: Mapped[str] = mapped_column(Text)
    failover_after: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
