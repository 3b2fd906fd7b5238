"""The phone_usage table: how many SMS parts each phone was handed in the current minute and
day, for its budget (routing/budgets.py)."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from smsgw.db.base import Base


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
