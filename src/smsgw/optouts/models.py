"""The opt_outs table: per account, the numbers that asked not to be texted any more."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from smsgw.db.base import Base, UTCDateTime


class OptOut(Base):
    """`phone_number` as the send path matches recipients (E.164 when it parses, else as
    given: domain/phones.match_key); `source` is how it came: 'sms' (the recipient texted a
    stop word), 'api' or 'dashboard'. The unique key serves the send path's lookup."""

    __tablename__ = "opt_outs"
    __table_args__ = (UniqueConstraint("user_id", "phone_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    phone_number: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
