"""Retention beyond messages (issue 17): what has expired goes whatever SMSGW_RETENTION_DAYS
says (dashboard sessions, one-time codes, token records); webhook events with their
deliveries and delivery log, and closed inbox exports, go after twice the webhooks' maximum
age, or after SMSGW_RETENTION_DAYS once nothing of theirs is pending. The clock is moved,
never waited for (domain/clock.set_clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import insert

from smsgw.accounts import codes, sessions
from smsgw.accounts import service as accounts
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.base import table_of
from smsgw.db.engine import Database, database_for
from smsgw.devices.models import Device
from smsgw.inbox.models import InboxExport
from smsgw.tokens.models import Token
from smsgw.webhooks.models import Attempt, Delivery, Webhook, WebhookEvent
from smsgw.workers import retention
from smsgw.workers.webhooks import PRUNE_EVERY_SECONDS, WebhookWorker
from tests.conftest import CLOCK_START, database_rows, make_settings

T = TypeVar("T")
T0 = CLOCK_START
DAY = timedelta(days=1)


def migrated(tmp_path: Path, **overrides: Any) -> Settings:
    settings = make_settings(tmp_path / "data", **overrides)
    migrate.upgrade(settings)
    return settings


def with_db(settings: Settings, action: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = database_for(settings)
        try:
            return await action(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def rows(settings: Settings, sql: str) -> list[Any]:
    return sorted(row[0] for row in database_rows(settings, sql))


def _token(jti: str, expires: datetime, revoked: datetime | None = None) -> dict[str, Any]:
    return {
        "id": jti, "user_id": 1, "token_use": "access", "parent_jti": None, "token_hash": None,
        "scopes": "messages:send", "created_at": T0, "expires_at": expires, "revoked_at": revoked,
    }  # fmt: skip


def test_what_has_expired_goes_without_retention_days_and_nothing_live(
    tmp_path: Path, at: list[datetime]
) -> None:
    settings = migrated(tmp_path)
    assert settings.retention_days is None

    async def fill(db: Database) -> None:
        await accounts.create_user(db, "owner", "correct horse battery")
        user = 1
        await sessions.start(db, user, hours=1)
        await sessions.start(db, user, hours=48)
        await codes.issue(db, user, ttl_seconds=3600)
        await codes.issue(db, user, ttl_seconds=2 * 86400)
        async with db.write() as conn:
            await conn.execute(insert(table_of(Token)), [
                _token("expired", T0 + timedelta(hours=1)),
                _token("expired-revoked", T0 + timedelta(hours=1), revoked=T0),
                _token("revoked-live", T0 + 3 * DAY, revoked=T0),
                _token("live", T0 + 3 * DAY),
            ])  # fmt: skip

    with_db(settings, fill)
    at[0] = T0 + timedelta(minutes=30)  # nothing has expired yet
    gone = with_db(settings, lambda db: retention.sweep(db, settings))
    assert (gone["web_sessions"], gone["user_codes"], gone["tokens"]) == (0, 0, 0)
    at[0] = T0 + timedelta(hours=2)
    gone = with_db(settings, lambda db: retention.sweep(db, settings))
    assert (gone["web_sessions"], gone["user_codes"], gone["tokens"]) == (1, 1, 2)
    assert "messages" not in gone  # SMSGW_RETENTION_DAYS unset: messages are kept
    later = T0 + timedelta(hours=2)
    assert all(e > later for e in _times(settings, "SELECT expires_at FROM web_sessions"))
    assert all(e > later for e in _times(settings, "SELECT expires_at FROM user_codes"))
    assert rows(settings, "SELECT id FROM tokens") == ["live", "revoked-live"]
    assert rows(settings, "SELECT count(*) FROM users") == [1]


def _times(settings: Settings, sql: str) -> list[datetime]:
    """Timestamps as stored (text on SQLite, datetimes on PostgreSQL), as UTC datetimes."""
    found = [row[0] for row in database_rows(settings, sql)]
    assert found, sql
    return [
        v.astimezone(UTC)
        if isinstance(v, datetime)
        else datetime.fromisoformat(v).replace(tzinfo=UTC)
        for v in found
    ]


async def _webhook_history(db: Database, when: datetime) -> None:
    """Owner 1's webhook with three events made at `when`: one delivered (two attempts),
    one failed (given up), one still pending (an attempt so far); and a closed and an open
    inbox export."""
    async with db.write() as conn:
        await conn.execute(insert(table_of(Device)).values(
            id="phone", user_id=1, token_hash="h", created_at=when, updated_at=when,
            last_seen=when,
        ))  # fmt: skip
        await conn.execute(insert(table_of(Webhook)).values(
            id=1, ext_id="hook", user_id=1, device_id=None, url="https://example.test/hook",
            event="sms:received", created_at=when, updated_at=when,
        ))  # fmt: skip
        for pk, state in enumerate(("delivered", "failed", "pending"), start=1):
            await conn.execute(insert(table_of(WebhookEvent)).values(
                id=pk, event_id=f"event{pk}", user_id=1, device_id=None, event="sms:received",
                dedupe_key=f"key{pk}", payload={"n": pk}, created_at=when,
            ))  # fmt: skip
            await conn.execute(insert(table_of(Delivery)).values(
                id=pk, event_pk=pk, webhook_pk=1, state=state, attempts=2, next_at=when,
                created_at=when, updated_at=when,
            ))  # fmt: skip
            for _ in range(2 if state != "pending" else 1):
                await conn.execute(insert(table_of(Attempt)).values(
                    webhook_pk=1, delivery_pk=pk, event_id=f"event{pk}", event="sms:received",
                    started_at=when, finished_at=when, status_code=500,
                ))  # fmt: skip
        await conn.execute(insert(table_of(InboxExport)), [
            {"user_id": 1, "device_id": "phone", "since": when, "until": when, "types": "SMS",
             "delivery": "Batch", "state": state, "created_at": when, "requested_at": when,
             "last_activity_at": when}
            for state in ("done", "open")
        ])  # fmt: skip


def _prune_webhooks(settings: Settings) -> int:
    async def prune(db: Database) -> int:
        worker = WebhookWorker(settings, db)
        worker._last_prune = -float(PRUNE_EVERY_SECONDS)
        try:
            return await worker.prune()
        finally:
            await worker.close()

    return with_db(settings, prune)


def _webhook_rows(settings: Settings) -> dict[str, list[Any]]:
    return {
        "events": rows(settings, "SELECT event_id FROM webhook_events"),
        "deliveries": rows(settings, "SELECT event_pk FROM webhook_deliveries"),
        "attempts": rows(settings, "SELECT delivery_pk FROM webhook_attempts"),
        "exports": rows(settings, "SELECT state FROM inbox_exports"),
    }


@pytest.mark.parametrize("retention_days", [None, 1])
def test_webhook_history_goes_after_twice_the_max_age_or_the_retention_days_once_settled(
    tmp_path: Path, at: list[datetime], retention_days: int | None
) -> None:
    settings = migrated(tmp_path, retention_days=retention_days, webhooks_max_age_seconds=86400)
    with_db(settings, lambda db: accounts.create_user(db, "owner", "correct horse battery"))
    with_db(settings, lambda db: _webhook_history(db, T0))
    everything = _webhook_rows(settings)
    assert everything["attempts"] == [1, 1, 2, 2, 3]

    at[0] = T0 + DAY - timedelta(minutes=1)  # younger than any window: all stays
    assert _prune_webhooks(settings) == 0
    at[0] = T0 + DAY + timedelta(minutes=1)  # past SMSGW_RETENTION_DAYS=1, within 2x max age
    if retention_days is None:
        assert _prune_webhooks(settings) == 0
        assert _webhook_rows(settings) == everything
    else:  # the settled events go with their deliveries and log, the closed export too
        assert _prune_webhooks(settings) == 3
        assert _webhook_rows(settings) == {
            "events": ["event3"], "deliveries": [3], "attempts": [3], "exports": ["open"]
        }  # fmt: skip
    at[0] = T0 + 2 * DAY + timedelta(minutes=1)  # past twice the max age: pending or not
    assert _prune_webhooks(settings) == (1 if retention_days else 4)
    assert _webhook_rows(settings) == {
        "events": [], "deliveries": [], "attempts": [], "exports": ["open"]
    }  # fmt: skip
    assert rows(settings, "SELECT ext_id FROM webhooks") == ["hook"]  # registrations stay
