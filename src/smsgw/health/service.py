"""The checks behind `/health*` and the report they make, in upstream's shape:

`{"status": "pass"|"warn"|"fail", "version": str, "checks": {"<provider>:<name>":
{"description", "observedUnit", "observedValue", "status"}}}`; overall status is the
worst check's. Each check looks at the real thing: a fresh connection to the database
file, the time since the worker's last completed round, the free space where data lives.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from smsgw import __version__

#: Longest a database ping may take before it counts as failed.
PING_TIMEOUT_SECONDS = 5.0
MIB = 1024 * 1024


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 (a health status, not a password)
    WARN = "warn"
    FAIL = "fail"


RANK = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


@dataclass(frozen=True)
class Check:
    description: str
    unit: str
    value: int
    status: Status

    def render(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "observedUnit": self.unit,
            "observedValue": self.value,
            "status": self.status.value,
        }


@dataclass
class Probe:
    """What the checks need; one per running app. `last_round` gives the monotonic time of
    the worker's last completed round (0: none yet, then start-up time counts)."""

    #: A round trip to the database through a new connection (`Database.ping`).
    ping: Callable[[], Awaitable[None]]
    data_dir: Path
    min_free_mb: int
    stall_seconds: float
    started: float = field(default_factory=time.monotonic)
    ping_failures: int = 0


async def database(probe: Probe) -> Check:
    """db:ping: a round trip through a new connection; value = consecutive failures."""
    try:
        await asyncio.wait_for(probe.ping(), PING_TIMEOUT_SECONDS)
    except Exception:
        probe.ping_failures += 1
    else:
        probe.ping_failures = 0
    status = Status.FAIL if probe.ping_failures else Status.PASS
    return Check("Database ping", "failed pings", probe.ping_failures, status)


def worker(probe: Probe, last_round: float) -> Check:
    """worker:loop: seconds since the periodic worker last finished a round."""
    age = time.monotonic() - (last_round or probe.started)
    status = Status.FAIL if age > probe.stall_seconds else Status.PASS
    return Check("Seconds since the worker's last round", "s", int(age), status)


def disk(probe: Probe) -> Check:
    """disk:free: MiB free in the data directory; warn below twice the minimum."""
    try:
        free = shutil.disk_usage(probe.data_dir).free // MIB
    except OSError:
        return Check("Free space in the data directory", "MiB", 0, Status.FAIL)
    status = Status.PASS
    if free < probe.min_free_mb:
        status = Status.FAIL
    elif free < 2 * probe.min_free_mb:
        status = Status.WARN
    return Check("Free space in the data directory", "MiB", int(free), status)


def report(checks: dict[str, Check]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body): 503 when any check fails, else 200."""
    overall = max((c.status for c in checks.values()), key=RANK.__getitem__, default=Status.PASS)
    body: dict[str, Any] = {"status": overall.value, "version": __version__}
    if checks:
        body["checks"] = {name: check.render() for name, check in checks.items()}
    return (503 if overall == Status.FAIL else 200), body


async def readiness(probe: Probe, last_round: float) -> dict[str, Check]:
    return {
        "db:ping": await database(probe),
        "worker:loop": worker(probe, last_round),
        "disk:free": disk(probe),
    }


def liveness(probe: Probe, last_round: float) -> dict[str, Check]:
    return {"worker:loop": worker(probe, last_round)}
