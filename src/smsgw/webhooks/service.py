"""Webhook use cases: register, list, delete, the signing key, the delivery log."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from smsgw.accountsettings import repository as account_settings
from smsgw.db.engine import Database, DriverUnit, UnitConnection
from smsgw.domain import clock, ids
from smsgw.domain.errors import Conflict, InvalidInput, NotFound
from smsgw.events.hub import Event, EventHub, PhoneEvent
from smsgw.webhooks import guard, repository
from smsgw.webhooks.repository import WebhookRecord
from smsgw.webhooks.schemas import WebhookIn

WEBHOOK_ID_LENGTH = 21
LOG_LIMIT = 100


@dataclass(frozen=True)
class Changed:
    """A stored webhook, and which phones must be told (None: all of the owner's)."""

    webhook: WebhookRecord
    device_id: str | None


async def _key_in_settings(conn: UnitConnection, user_id: int) -> str | None:
    """The `webhooks.signing_key` account setting, when the user set one (it then wins)."""
    section = (await account_settings.load_unit(conn, user_id)).get("webhooks") or {}
    key = section.get("signing_key") if isinstance(section, dict) else None
    return key if isinstance(key, str) and key else None


async def signing_key_of(conn: UnitConnection, user_id: int) -> str:
    """The key `user_id`'s webhooks are signed with: the `webhooks.signing_key` setting when
    set (phones sign with that one too), else one smsgw made on first use (needs a write)."""
    key = await _key_in_settings(conn, user_id)
    if key is not None:
        return key
    key = await repository.signing_key_unit(conn, user_id)
    if key is None:  # (not replaced: another node may have stored one since the look)
        key = await repository.first_signing_key_unit(
            conn, user_id, secrets.token_urlsafe(24), clock.now()
        )
    return key


async def signing_key(db: Database, user_id: int, rotate: bool = False) -> str:
    """The caller's signing key; `rotate` replaces it with a new one first."""
    async with db.write() as conn:
        unit = DriverUnit(conn)
        if rotate and await _key_in_settings(unit, user_id) is not None:
            raise Conflict(
                "the signing key is set in /settings (webhooks.signing_key): change it there"
            )
        if rotate:
            await repository.set_signing_key_unit(
                unit, user_id, secrets.token_urlsafe(24), clock.now()
            )
        return await signing_key_of(unit, user_id)


async def list_webhooks(db: Database, user_id: int) -> list[WebhookRecord]:
    async with db.read() as conn:
        return await repository.list_for(conn, user_id)


async def register(db: Database, user_id: int, body: WebhookIn, allow_private: bool) -> Changed:
    """Create or replace (by id) a webhook; the phone it is bound to must be the caller's."""
    url = guard.check_url(body.url.strip(), allow_private)
    ext_id = body.id or ids.random_token(WEBHOOK_ID_LENGTH)
    now = clock.now()
    async with db.write() as conn:
        if body.deviceId and not await repository.device_owned(conn, user_id, body.deviceId):
            raise InvalidInput(f'invalid "device_id" = "{body.deviceId}": record not found')
        previous = await repository.find(conn, user_id, ext_id)
        values = {"ext_id": ext_id, "device_id": body.deviceId or None, "url": url,
                  "event": body.event, "updated_at": now}  # fmt: skip
        await repository.upsert(conn, user_id, values)
        await signing_key_of(DriverUnit(conn), user_id)
        stored = await repository.find(conn, user_id, ext_id)
    assert stored is not None
    moved = previous is not None and previous.device_id != stored.device_id
    return Changed(stored, None if moved else stored.device_id)


async def delete(db: Database, user_id: int, ext_id: str) -> bool:
    """Delete a webhook of the caller; False when there was none (still a success)."""
    async with db.write() as conn:
        return await repository.remove(conn, user_id, ext_id)


async def attempts(db: Database, user_id: int, ext_id: str) -> list[dict[str, object]]:
    """The webhook's most recent delivery attempts, newest first; NotFound if not the caller's."""
    async with db.read() as conn:
        found = await repository.find(conn, user_id, ext_id)
        if found is None:
            raise NotFound(f"webhook {ext_id!r} not found")
        return await repository.attempts_of(conn, found.pk, LOG_LIMIT)


#: Keyed digest under the server's secret: `derive(purpose, data)` (TokenService.derive).
Derive = Callable[[str, str], str]


def hook_secret(derive: Derive, token_hash: str) -> str:
    """The secret in a phone's hub URL: derived from its token (so a new token changes it)
    under the server's secret (so a copy of the database cannot forge a phone's posts)."""
    return derive("webhook hub", token_hash)[:32]


async def phone_of_hook(
    db: Database, derive: Derive, device_id: str, secret: str, previous: Derive | None = None
) -> int | None:
    """The owner of `device_id` if `secret` is its hub secret (constant-time), else None;
    `previous`: the derivation under the server's secret before a rotation, whose URLs the
    phone may still hold (during the grace period, see tokens/rotation.py)."""
    found = await db.read_unit(lambda conn: repository.device_secret_source(conn, device_id))
    source = found[1] if found else "absent"
    matched = False
    for each in (derive, previous):
        if each is not None:  # compare with every candidate: the time tells nothing
            matched |= hmac.compare_digest(hook_secret(each, source).encode(), secret.encode())
    return found[0] if matched and found is not None else None


async def for_phone(db: Database, user_id: int, device_id: str) -> list[WebhookRecord]:
    async with db.read() as conn:
        return await repository.for_phone(conn, user_id, device_id)


def tell_phones(hub: EventHub, user_id: int, device_id: str | None) -> None:
    """`WebhooksUpdated` to the phone concerned, or to all of the owner's phones."""
    targets = {device_id} if device_id else hub.devices_of(user_id)
    hub.publish(targets, Event(PhoneEvent.WEBHOOKS_UPDATED))
