"""The one clock seam: all of smsgw asks `now()`; tests may swap `set_clock`."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

_clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731
_monotonic: Callable[[], float] = time.monotonic


def now() -> datetime:
    """The current time, UTC, truncated to milliseconds (the precision smsgw stores)."""
    current = _clock()
    return current.replace(microsecond=current.microsecond // 1000 * 1000)


def set_clock(clock: Callable[[], datetime]) -> None:
    """Replace the clock (tests only)."""
    global _clock
    _clock = clock


def monotonic() -> float:
    """Seconds on a clock that never goes back (for windows and rates, not for dates)."""
    return _monotonic()


def set_monotonic(clock: Callable[[], float]) -> None:
    """Replace the monotonic clock (tests only)."""
    global _monotonic
    _monotonic = clock


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and `Z`, e.g. `2026-05-17T09:32:11.421Z`."""
    utc = moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    return utc.isoformat(timespec="milliseconds") + "Z"  # a third of strftime's cost


_LENIENT = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}(?::\d{2})?)(?P<fraction>\.\d+)?"
    r"(?P<zone>[Zz]|(?P<sign>\+-|[+-])(?P<hours>\d{1,2}):?(?P<minutes>\d{2}))?$"
)


#: Texts up to this long are remembered by `parse_timestamp` (any phone's are shorter; a
#: longer one, say a fraction of a million digits, is parsed each time and never kept).
CACHED_TEXT = 40


def parse_timestamp(text: str) -> datetime:
    """Read a timestamp leniently, as phones write them; the result is UTC.

    Accepts RFC 3339 with any number of fractional digits, `Z` or `±HH:MM`, also `±HHMM` and
    the malformed `+-H:MM` that Android 5/6 writes for negative offsets; no zone means UTC.
    Raises ValueError when the text is not a timestamp at all, or names a moment out of
    range once turned to UTC.

    Short texts are cached: a phone repeats a message's state times in every report of it
    (about three).
    """
    return _parse_cached(text) if len(text) <= CACHED_TEXT else _parse(text)


def _parse(text: str) -> datetime:
    match = _LENIENT.match(text.strip())
    if match is None:
        raise ValueError(f"not a timestamp: {text!r}")
    clock_time = match["time"] if match["time"].count(":") == 2 else match["time"] + ":00"
    fraction = (match["fraction"] or ".0")[1:7].ljust(6, "0")
    moment = datetime.fromisoformat(f"{match['date']}T{clock_time}.{fraction}")
    offset = timedelta()
    if match["hours"] is not None:
        offset = timedelta(hours=int(match["hours"]), minutes=int(match["minutes"]))
        if match["sign"] != "+":
            offset = -offset
    try:
        return (moment - offset).replace(tzinfo=UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
        raise ValueError(f"not a timestamp in range: {text!r}") from None


_parse_cached = functools.lru_cache(maxsize=4096)(_parse)
