"""The virtual_phones table: how each virtual phone behaves, and which server drives it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from smsgw.db.base import Base, UTCDateTime


class VirtualPhone(Base):
    """One row per virtual phone (its `devices` row has `virtual` set).

    `script` is the outcomes it cycles through, one per message (virtualphones/script.py);
    `step` how many it has used. `driver` is the server process that holds the lease on
    driving the phone until `lease_until` (several processes or nodes: one drives it).
    """

    __tablename__ = "virtual_phones"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    #: From taking a message to its outcome, in milliseconds.
    delay_ms: Mapped[int] = mapped_column(Integer)
    script: Mapped[str] = mapped_column(String(512))
    step: Mapped[int] = mapped_column(Integer, default=0)
    driver: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
