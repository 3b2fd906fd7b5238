"""Hook URLs across a rotation of the server's secret: posts a phone still holds with the old
URL are taken for `SMSGW_HOOK_URL_GRACE_SECONDS`, then refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from smsgw.config import Settings
from smsgw.db.engine import database_for
from smsgw.domain import clock
from smsgw.tokens import rotation
from tests.conftest import Account, LiveServer, running
from tests.fakes.phone import Credentials
from tests.webhook_support import Api, eventually, hub_settings, phone, run, started, until

OLD = "the-secret-before-the-rotation-0123456789"
NEW = "the-secret-after-the-rotation-9876543210"


@contextmanager
def shifted_clock(by: timedelta) -> Iterator[None]:
    """smsgw (served in this process) sees the time `by` later."""
    clock.set_clock(lambda: datetime.now(UTC) + by)
    try:
        yield
    finally:
        clock.set_clock(lambda: datetime.now(UTC))


def first_life(data: Path) -> tuple[Account, Credentials, list[dict[str, Any]]]:
    """Under the old secret: a phone signs in and syncs its hook URLs (their paths, since the
    next server listens on another port; a real server keeps its address)."""
    with running(hub_settings(data, jwt_secret=OLD)) as server:
        owner = server.create_user("owner")
        kept: list[Any] = []

        async def scenario() -> None:
            device = await started(phone(server, owner))
            hooks = [{**h, "url": h["url"].removeprefix(server.url)} for h in device.webhooks]
            kept.extend([device.credentials, hooks])
            await device.kill()

        run(scenario)
    return owner, kept[0], kept[1]


def at(server: LiveServer, hooks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The hooks' paths on `server`."""
    return [{**h, "url": server.url + h["url"]} for h in hooks]


def test_posts_to_a_hook_url_from_before_a_rotation_are_taken_during_the_grace_period(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    owner, credentials, old_hooks = first_life(data)
    rotated = hub_settings(
        data, jwt_secret=NEW, jwt_previous_secret=OLD, hook_url_grace_seconds=3600
    )
    with running(rotated) as server:

        async def scenario() -> None:
            api = Api(server, owner)
            device = phone(server, owner, credentials=credentials, webhook_retries=1)
            device.webhooks = at(server, old_hooks)  # posts queued before it synced again
            device.receive_sms("+12025550111", "queued across the rotation")
            await eventually(lambda: ("sms:received", 204) in device.webhook_posts)

            async def one_stored() -> bool:
                return (await api.inbox())[1] == 1

            await until(one_stored)
            fresh = (await device._call("GET", "/webhooks")).json()
            assert {h["url"] for h in fresh}.isdisjoint({h["url"] for h in device.webhooks})
            with shifted_clock(timedelta(seconds=3601)):  # the grace period is over
                device.receive_sms("+12025550111", "too late for the old URL")
                await eventually(lambda: ("sms:received", 401) in device.webhook_posts)
                device.webhooks = fresh  # the URL the phone synced works
                device.receive_sms("+12025550111", "through the new URL")
                await eventually(lambda: device.webhook_posts.count(("sms:received", 204)) == 2)
            assert (await api.inbox())[1] == 2
            await device.kill()
            await api.close()

        run(scenario)


def forget_the_recorded_secret(settings: Settings) -> None:
    """As `smsgw tokens forget-secret`: on PostgreSQL, a node with another secret than the
    recorded one, and no previous one naming it, starts only once it is forgotten."""

    async def forget() -> None:
        db = database_for(settings)
        try:
            assert await rotation.forget(db)
        finally:
            await db.dispose()

    asyncio.run(forget())


def test_without_the_previous_secret_the_old_hook_urls_are_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    owner, credentials, old_hooks = first_life(data)
    rotated = hub_settings(data, jwt_secret=NEW)
    if rotated.database_scheme == "postgresql":
        forget_the_recorded_secret(rotated)
    with running(rotated) as server:

        async def scenario() -> None:
            device = phone(server, owner, credentials=credentials, webhook_retries=1)
            device.webhooks = at(server, old_hooks)
            device.receive_sms("+12025550111", "lost")
            await eventually(lambda: ("sms:received", 401) in device.webhook_posts)
            await device.kill()

        run(scenario)


def test_the_grace_period_counts_from_the_first_start_under_the_new_secret(
    tmp_path: Path,
) -> None:
    """A restart later in the grace period does not start it again."""
    data = tmp_path / "data"
    owner, credentials, old_hooks = first_life(data)
    rotated = hub_settings(
        data, jwt_secret=NEW, jwt_previous_secret=OLD, hook_url_grace_seconds=3600
    )
    with running(rotated):
        pass
    with shifted_clock(timedelta(seconds=3601)), running(rotated) as server:

        async def scenario() -> None:
            device = phone(server, owner, credentials=credentials, webhook_retries=1)
            device.webhooks = at(server, old_hooks)
            device.receive_sms("+12025550111", "after the grace period")
            await eventually(lambda: ("sms:received", 401) in device.webhook_posts)
            await device.kill()

        run(scenario)


def test_a_phone_signing_in_again_keeps_its_old_hook_url_working(tmp_path: Path) -> None:
    """Signing in again makes a new phone entry with a new URL; the old entry (until you
    delete it) still takes the posts queued with its URL."""
    with running(hub_settings(tmp_path / "data")) as server:
        owner = server.create_user("owner")

        async def scenario() -> None:
            api = Api(server, owner)
            before = await started(phone(server, owner, webhook_retries=1))
            old_hooks = list(before.webhooks)
            await before.kill()
            after = await started(phone(server, owner, webhook_retries=1))
            assert after.credentials is not None and before.credentials is not None
            assert after.credentials.id != before.credentials.id
            after.webhooks = old_hooks  # a post queued before the phone signed in again
            after.receive_sms("+12025550111", "queued before signing in again")
            await eventually(lambda: ("sms:received", 204) in after.webhook_posts)
            await after.kill()
            await api.close()

        run(scenario)
