"""Reading the health a phone posts with `system:ping`, keeping it, and saying it in words.

The app (v1.68, protocol §5) posts `{"health": {"status": "pass|warn|fail", "checks":
{"<name>": {"status", "observedValue", "observedUnit", "description"}}}}`; this module takes
the checks it knows and leaves out anything else. A ping is never refused for its health:
the app would retry it, and the event still goes to the owner's webhooks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from smsgw.db.engine import Database, UnitConnection
from smsgw.phonehealth import repository
from smsgw.phonehealth.repository import HealthRecord

#: The app's check names and the field each one fills, with the values it may hold.
CHECKS: dict[str, tuple[str, int, int]] = {
    "battery:level": ("battery_level", 0, 100),
    "battery:charging": ("battery_charging", 0, 255),
    "connection:status": ("connection_status", 0, 1),
    "connection:transport": ("transport", 0, 255),
    "connection:cellular": ("cellular", 0, 255),
    "messages:failed": ("failed_last_hour", 0, 2**31 - 1),
}
STATUSES = ("pass", "warn", "fail")
#: The app's `CellularNetworkType`, by index.
CELLULAR = ("none", "unknown", "2G", "3G", "4G", "5G")
#: The app's `TransportType` flags.
TRANSPORTS = ((4, "Wi-Fi"), (8, "Ethernet"), (2, "cellular"))


def parse(payload: Any, now: datetime) -> HealthRecord:
    """The health in a `system:ping` payload, received at `now`; what is missing or not
    of the app's form is None."""
    found = payload.get("health") if isinstance(payload, dict) else None
    found = found if isinstance(found, dict) else {}
    status = found.get("status")
    values: dict[str, Any] = {"status": status if status in STATUSES else None}
    checks = found.get("checks")
    for name, (column, low, high) in CHECKS.items():
        check = checks.get(name) if isinstance(checks, dict) else None
        value = check.get("observedValue") if isinstance(check, dict) else None
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        values[column] = value if ok else None
    return HealthRecord(reported_at=now, **values)


async def record_unit(conn: UnitConnection, device_id: str, payload: Any, now: datetime) -> None:
    """Keep the health of a phone's `system:ping` (in the caller's unit of work)."""
    await repository.store_unit(conn, device_id, parse(payload, now))


async def of_user(db: Database, user_id: int) -> dict[str, HealthRecord]:
    """The latest health of each of the owner's phones that reported one, by phone id."""
    async with db.read() as conn:
        return await repository.of_user(conn, user_id)


def battery_text(health: HealthRecord) -> str:
    """E.g. "84 %, charging"; "not reported" when the ping had no battery check."""
    if health.battery_level is None:
        return "not reported"
    flags = health.battery_charging
    if flags is None:
        return f"{health.battery_level} %"
    plugged = " on AC" if flags & 2 else " on USB" if flags & 4 else ""
    if flags & 1:
        state = "charging" + plugged
    else:
        state = "plugged in" + plugged if plugged else "not charging"
    return f"{health.battery_level} %, {state}"


def connection_text(health: HealthRecord) -> str:
    """E.g. "online, cellular 4G", "no internet"; the app reports no signal strength."""
    if health.connection_status == 0:
        return "no internet"
    ways = [name for flag, name in TRANSPORTS if (health.transport or 0) & flag]
    cellular = health.cellular
    if "cellular" in ways and cellular is not None and 2 <= cellular < len(CELLULAR):
        ways[ways.index("cellular")] = f"cellular {CELLULAR[cellular]}"
    if health.connection_status is None and not ways:
        return "not reported"
    return ", ".join(["online", *ways]) if health.connection_status else ", ".join(ways)
