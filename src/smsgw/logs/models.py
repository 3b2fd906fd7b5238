"""The event_log table: one row per server-side event of one account."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from smsgw.db.base import Base, UTCDateTime


class LogEntry(Base):
    __tablename__ = "event_log"
    __table_args__ = (Index(None, "user_id", "created_at"), Index(None, "created_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    module: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(String(512))
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON)
