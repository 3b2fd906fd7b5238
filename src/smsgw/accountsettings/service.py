"""Account settings use cases: read (API view, phone view) and change (merge or replace).

A change is committed, written to the owner's event log (which keys, never values), and
then announced with `SettingsUpdated` to the owner's connected phones, which fetch the
phone view (`for_phone`).
"""

from __future__ import annotations

from typing import Any

from smsgw.accountsettings import repository
from smsgw.accountsettings.schemas import Document, check_consistent, readable, validate
from smsgw.db.engine import Database
from smsgw.domain import clock
from smsgw.events.hub import Event, EventHub, PhoneEvent
from smsgw.logs import service as logs

#: What every phone must be told whatever the owner set: use Server-Sent Events rather
#: than Firebase, which a self-hosted server cannot reach.
SERVER_SETTINGS: Document = {"gateway": {"notification_channel": "SSE_ONLY"}}


async def get(db: Database, user_id: int) -> Document:
    """The owner's settings as the API shows them (secrets left out); `{}` when none."""
    async with db.read() as conn:
        return readable(await repository.load(conn, user_id))


#: Never handed to phones even if stored before smsgw refused them (schemas.py): the
#: end-to-end passphrase is set on the phones themselves. A null (a reset) still goes.
NOT_FOR_PHONES = {("encryption", "passphrase")}


async def for_phone(db: Database, user_id: int) -> Document:
    """What the owner's phones apply: the stored settings, overlaid with SERVER_SETTINGS.

    A `null` value goes out as stored: the app takes it as "back to the app's default" (as
    the upstream server sends it). Empty sections are left out (the app needs none).
    """
    async with db.read() as conn:
        stored = await repository.load(conn, user_id)
    merged: Document = {}
    for name, section in stored.items():
        values = {
            key: value
            for key, value in section.items()
            if value is None or (name, key) not in NOT_FOR_PHONES
        }
        if values:
            merged[name] = values
    for name, section in SERVER_SETTINGS.items():
        merged[name] = {**merged.get(name, {}), **section}
    return merged


def merge(current: Document, change: Document) -> Document:
    """PATCH semantics: sections merge key by key (two levels deep)."""
    merged = {name: dict(section) for name, section in current.items()}
    for name, section in change.items():
        merged[name] = {**merged.get(name, {}), **section}
    return merged


async def update(
    db: Database, hub: EventHub, user_id: int, body: Any, *, replace: bool
) -> Document:
    """Validate `body`, then merge it into (or, `replace`, put it in place of) the stored
    settings; returns the API view of the result. Unknown keys and bad values: InvalidInput,
    and nothing changes."""
    change = validate(body)
    async with db.write() as conn:
        current = await repository.load(conn, user_id)
        document = change if replace else merge(current, change)
        check_consistent(document)
        await repository.store(conn, user_id, document, clock.now())
        keys = sorted(f"{name}.{key}" for name, section in change.items() for key in section)
        await logs.record(
            conn, user_id, logs.Module.SETTINGS, logs.Priority.INFO,
            "settings replaced" if replace else "settings changed", {"keys": keys},
        )  # fmt: skip
    hub.publish(hub.devices_of(user_id), Event(PhoneEvent.SETTINGS_UPDATED))
    return readable(document)
