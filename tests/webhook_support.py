"""Shared helpers of the webhook and inbox tests: a server with fast retries, phones, waits."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from smsgw.accounts import service as accounts
from smsgw.config import Settings
from smsgw.db.engine import Database
from smsgw.webhooks import outbox
from smsgw.webhooks import service as webhooks
from smsgw.webhooks.schemas import WebhookIn
from tests.clients import TLS
from tests.conftest import Account, LiveServer, database_rows, make_settings
from tests.fakes.phone import SimulatedPhone

MOBILE = "/api/mobile/v1"


def hub_settings(data_dir: Path, **overrides: object) -> Settings:
    """Private URLs allowed (receivers live on 127.0.0.1), retries in fractions of a second."""
    values: dict[str, object] = {
        "webhooks_allow_private_urls": True,
        "webhooks_retry_base_seconds": 0.2,
        "webhooks_retry_max_seconds": 1,
        "webhooks_poll_seconds": 0.05,
        "webhooks_timeout_seconds": 2,
        "worker_interval_seconds": 0.2,
        "sse_keepalive_seconds": 1,
        "inbox_export_settle_seconds": 0.5,
        "webhooks_phone_post_wait_seconds": 1,
    }
    values.update(overrides)
    return make_settings(data_dir, **values)


def run(scenario: Callable[[], Awaitable[None]], within: float = 180) -> None:
    asyncio.run(asyncio.wait_for(scenario(), within))


async def eventually(check: Callable[[], bool], within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def until(check: Callable[[], Awaitable[bool]], within: float = 60) -> None:
    """Wait for an asynchronous condition (one that asks the server)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def drained(settings: Settings) -> Callable[[], Awaitable[bool]]:
    """A check for `until`: no inbox export open and no webhook delivery pending (in flight
    counts as pending), so nothing more reaches a receiver unless a phone posts again."""

    async def check() -> bool:
        [(open_exports,)] = database_rows(
            settings, "SELECT count(*) FROM inbox_exports WHERE state = 'open'"
        )
        [(pending,)] = database_rows(
            settings, "SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'"
        )
        return int(open_exports) == 0 and int(pending) == 0

    return check


def export_count(settings: Settings, device_id: str | None = None) -> int:
    """How many inbox exports were recorded (for one phone, when given)."""
    if device_id is None:
        [(count,)] = database_rows(settings, "SELECT count(*) FROM inbox_exports")
    else:
        query = "SELECT count(*) FROM inbox_exports WHERE device_id = ?"
        [(count,)] = database_rows(settings, query, (device_id,))
    return int(count)


def verify_signature(key: str, body: bytes, headers: dict[str, str]) -> bool:
    """An implementation of the upstream check written from the protocol text, not our code."""
    lowered = {name.lower(): value for name, value in headers.items()}
    message = body + lowered["x-timestamp"].encode("ascii")
    expected = hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, lowered["x-signature"])


class Api:
    """The 3rd-party API as an application uses it (async)."""

    def __init__(self, server: LiveServer, account: Account) -> None:
        self.client = httpx.AsyncClient(
            base_url=server.api, auth=(account.login, account.password), timeout=20, verify=TLS
        )

    async def hook(self, url: str, event: str, **extra: Any) -> dict[str, Any]:
        response = await self.client.post("/webhooks", json={"url": url, "event": event} | extra)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def key(self) -> str:
        key: str = (await self.client.get("/webhooks/signing/key")).json()["signingKey"]
        return key

    async def send(self, text: str = "hi", numbers: tuple[str, ...] = ("+12025550100",)) -> str:
        body = {"phoneNumbers": list(numbers), "textMessage": {"text": text}}
        response = await self.client.post("/messages", json=body)
        assert response.status_code == 200, response.text
        message_id: str = response.json()["id"]
        return message_id

    async def deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/webhooks/{webhook_id}/deliveries")
        assert response.status_code == 200, response.text
        result: list[dict[str, Any]] = response.json()
        return result

    async def finished_deliveries(self, webhook_id: str, count: int) -> list[dict[str, Any]]:
        """The delivery log once `count` attempts are recorded as finished: a receiver has
        the request before smsgw has written down how it ended."""
        log: list[dict[str, Any]] = []

        async def finished() -> bool:
            log[:] = await self.deliveries(webhook_id)
            return sum(1 for attempt in log if attempt["finishedAt"]) >= count

        await until(finished)
        return log

    async def inbox(self, **params: Any) -> tuple[list[dict[str, Any]], int]:
        response = await self.client.get("/inbox", params=params)
        assert response.status_code == 200, response.text
        return response.json(), int(response.headers["X-Total-Count"])

    async def close(self) -> None:
        await self.client.aclose()


def phone(server: LiveServer, account: Account, **options: Any) -> SimulatedPhone:
    return SimulatedPhone(server.url + MOBILE, login=(account.login, account.password), **options)


async def started(device: SimulatedPhone, webhooks: int | None = None) -> SimulatedPhone:
    """Start a phone and wait until its event stream is open and its webhooks synced."""
    await device.start()
    await eventually(lambda: device.sse_opens > 0 and bool(device.webhooks))
    if webhooks is not None:
        await eventually(lambda: len(device.webhooks) == webhooks)
    return device


async def one_event(db: Database, settings: Settings, url: str, *more: str) -> int:
    """An account, its webhook `in` of `sms:sent` to `url` (and `in2`, `in3`... to `more`),
    and one such event in the outbox, made in-process (for a worker run without a server);
    the account's id."""
    await accounts.create_user(db, "alice", "correct horse battery")
    [(user_id,)] = database_rows(settings, "SELECT id FROM users WHERE login = 'alice'")
    for n, target in enumerate([url, *more], start=1):
        hook = WebhookIn(id="in" if n == 1 else f"in{n}", url=target, event="sms:sent")
        await webhooks.register(db, user_id, hook, allow_private=True)
    async with db.write() as conn:
        await outbox.record(conn, user_id, None, "sms:sent", "k", {"messageId": "m"})
    return int(user_id)
