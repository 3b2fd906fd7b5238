"""The one clock seam: all of smsgw asks `now()`; tests may swap `set_clock`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

_clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    """The current time, UTC, truncated to milliseconds (the precision smsgw stores)."""
    current = _clock()
    return current.replace(microsecond=current.microsecond // 1000 * 1000)


def set_clock(clock: Callable[[], datetime]) -> None:
    """Replace the clock (tests only)."""
    global _clock
    _clock = clock


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and `Z`, e.g. `2026-05-17T09:32:11.421Z`."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
