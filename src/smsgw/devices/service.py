"""Phone use cases: register, authenticate by token, update, list, delete, persist presence."""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.accounts import service as accounts
from smsgw.accounts.errors import LoginTaken
from smsgw.db.engine import Database
from smsgw.devices import repository
from smsgw.devices.errors import NotThisDevice, UnknownDevice
from smsgw.devices.recent import RecentPhones
from smsgw.devices.repository import DeviceRecord
from smsgw.domain import clock, ids
from smsgw.domain.states import ProcessingState
from smsgw.logs import service as logs
from smsgw.routing import repository as routing
from smsgw.routing.service import DEVICE_DELETED
from smsgw.virtualphones import repository as virtual_rows
from smsgw.webhooks import outbox

DEVICE_ID_LENGTH = 21
TOKEN_LENGTH = 32


@dataclass(frozen=True)
class Registration:
    """What a newly registered phone is told; `password` only for a new account."""

    device_id: str
    token: str
    login: str
    password: str | None


@dataclass(frozen=True)
class DeviceAuth:
    """The phone a token belongs to, with its SIM slots (None when it reported none) and the
    app version it last reported (None when none yet)."""

    device_id: str
    user_id: int
    sim_numbers: frozenset[int] | None = None
    app_version: str | None = None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def register(
    db: Database,
    user_id: int,
    login: str,
    name: str | None,
    push_token: str | None,
    sim_cards: list[dict[str, Any]] | None,
    password: str | None = None,
    app_version: str | None = None,
    virtual: Callable[[AsyncConnection, str], Awaitable[None]] | None = None,
    link: Callable[[AsyncConnection, str], Awaitable[None]] | None = None,
) -> Registration:
    """Add a phone to `user_id`'s account and issue its token (stored only as a hash).

    `virtual`: the phone is a virtual one (virtualphones/), whose settings this writes in the
    same transaction, given the new phone's id. `link`: the sender is a carrier link
    (links/), whose settings this writes so."""
    now = clock.now()
    device_id = ids.random_token(DEVICE_ID_LENGTH)
    token = ids.random_token(TOKEN_LENGTH)
    values = {
        "id": device_id,
        "user_id": user_id,
        "name": name,
        "token_hash": token_hash(token),
        "push_token": push_token,
        "sim_cards": sim_cards,
        "app_version": app_version,
        "created_at": now,
        "updated_at": now,
        "last_seen": now,
        "virtual": virtual is not None,
    }
    async with db.write() as conn:
        await repository.add(conn, values)
        if virtual is not None:
            await virtual(conn, device_id)
        if link is not None:
            await link(conn, device_id)
        await logs.phone_event(conn, user_id, device_id, "registered")
    return Registration(device_id, token, login, password)


async def new_account(db: Database) -> accounts.NewAccount:
    """An account for a phone that signed up on its own (upstream style credentials)."""
    for _ in range(5):
        login = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(6))
        password = "".join(
            secrets.choice(string.ascii_lowercase + string.digits) for _ in range(14)
        )
        try:
            return await accounts.create_user(db, login, password)
        except LoginTaken:
            continue
    raise RuntimeError("could not draw a free login")


async def authenticate(
    db: Database, token: str, recent: RecentPhones | None = None
) -> DeviceAuth | None:
    """The phone whose token this is, or None. With `recent` (the phones' hot paths), a
    token found valid a moment ago is taken without a read (devices/recent.py)."""
    hashed = token_hash(token)
    if recent is not None and (known := recent.get(hashed)) is not None:
        return known
    found = await db.read_unit(lambda conn: repository.auth_by_token_hash(conn, hashed))
    if found is None:
        return None
    device_id, user_id, sim_cards, app_version = found
    sims = frozenset(int(c["simNumber"]) for c in sim_cards or [] if "simNumber" in c)
    auth = DeviceAuth(device_id, user_id, sims or None, app_version)
    if recent is not None:
        recent.put(hashed, auth)
    return auth


async def note_app_version(db: Database, auth: DeviceAuth, version: str) -> DeviceAuth:
    """Keep `version` as the phone's app version when it differs from the stored one (a
    write only when the app changed, so the phone's hot paths stay read-only)."""
    if version == auth.app_version:
        return auth
    async with db.write() as conn:
        await repository.change(conn, auth.device_id, {"app_version": version})
    return replace(auth, app_version=version)


async def get(db: Database, device_id: str) -> DeviceRecord:
    async with db.read() as conn:
        device = await repository.by_id(conn, device_id)
    if device is None:
        raise UnknownDevice
    return device


async def update(
    db: Database,
    auth: DeviceAuth,
    claimed_id: str,
    push_token: str | None,
    sim_cards: list[dict[str, Any]] | None,
) -> None:
    """Store a new push token and SIM list (absent values stay as they are)."""
    if not secrets.compare_digest(claimed_id.encode(), auth.device_id.encode()):
        raise NotThisDevice
    values: dict[str, Any] = {"updated_at": clock.now()}
    if push_token:
        values["push_token"] = push_token
    if sim_cards is not None:
        values["sim_cards"] = sim_cards
    async with db.write() as conn:
        await repository.change(conn, auth.device_id, values)


async def list_devices(db: Database, user_id: int) -> list[DeviceRecord]:
    async with db.read() as conn:
        return await repository.of_user(conn, user_id)


async def delete(db: Database, user_id: int, device_id: str) -> None:
    """Delete one of the user's phones: its queued work goes back to the queue or fails.
    A virtual phone's messages go with it (virtualphones/: they were never sent, and would
    otherwise count as a real phone's)."""
    now = clock.now()
    async with db.write() as conn:
        device = await repository.by_id(conn, device_id)
        if device is None or device.user_id != user_id:
            raise UnknownDevice
        pinned = await routing.detach_device(conn, device_id, now)
        await routing.fail(conn, pinned, DEVICE_DELETED, now)
        await logs.messages_failed(conn, pinned, DEVICE_DELETED)
        await outbox.record_server_state(
            conn, pinned, ProcessingState.FAILED.value, DEVICE_DELETED, now
        )
        if device.virtual:
            await virtual_rows.delete_messages(conn, device_id)
        await repository.remove(conn, user_id, device_id)
        await logs.phone_event(conn, user_id, device_id, "deleted")


async def set_budget(
    db: Database, user_id: int, device_id: str, limits: dict[str, int | None]
) -> DeviceRecord:
    """Set one of the user's phones' own budget (routing/budgets.py): `limits` maps
    `per_minute` and/or `per_day` to parts (0: no limit) or None (the server's default);
    a limit left out stays as it is. The phone's next pull applies it."""
    values: dict[str, Any] = {f"parts_{key}": value for key, value in limits.items()}
    values["updated_at"] = clock.now()
    async with db.write() as conn:
        device = await repository.by_id(conn, device_id)
        if device is None or device.user_id != user_id:
            raise UnknownDevice
        await repository.change(conn, device_id, values)
        await logs.phone_event(conn, user_id, device_id, "budget changed")
        changed = await repository.by_id(conn, device_id)
    assert changed is not None
    return changed


async def save_presence(db: Database, seen: dict[str, datetime]) -> None:
    if seen:
        async with db.write() as conn:
            await repository.save_last_seen(conn, seen)
