"""The phone_health table: the latest health a phone reported (`system:ping`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from smsgw.db.base import Base, UTCDateTime


class PhoneHealth(Base):
    """One row per phone that ever posted a `system:ping`, replaced by each new one.

    The values are the app's health checks (`observedValue` of each), None when the ping
    carried no such check: `battery_level` in percent; `battery_charging` the app's flags
    (1 charging, 2 on AC, 4 on USB); `connection_status` 1 with internet, 0 without;
    `transport` flags (1 unknown, 2 cellular, 4 Wi-Fi, 8 Ethernet); `cellular` the index of
    None, Unknown, 2G, 3G, 4G, 5G; `failed_last_hour` the app's failed messages in the last
    hour. `status` is the app's overall pass, warn or fail.
    """

    __tablename__ = "phone_health"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    #: When smsgw received the ping (its own clock: a phone's may be wrong).
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str | None] = mapped_column(String(8))
    battery_level: Mapped[int | None] = mapped_column(SmallInteger)
    battery_charging: Mapped[int | None] = mapped_column(SmallInteger)
    connection_status: Mapped[int | None] = mapped_column(SmallInteger)
    transport: Mapped[int | None] = mapped_column(SmallInteger)
    cellular: Mapped[int | None] = mapped_column(SmallInteger)
    failed_last_hour: Mapped[int | None] = mapped_column(Integer)
