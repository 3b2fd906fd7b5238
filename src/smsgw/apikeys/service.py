"""API key use cases: create one (its key shown once), list, revoke, and check a key that a
request carries as `Authorization: Bearer` (docs/auth.md, Named API keys).

A key reads `smsgw_<public id>_<secret>`: the prefix tells a key from a JWT (which starts
with `eyJ`) without decoding anything; the public id (16 hex digits) finds the row; the
secret is 256 random bits from `secrets`. Only the secret's SHA-256 is stored, compared in
constant time. A fast hash is right here, unlike for passwords: no dictionary or brute force
finds 256 random bits from their digest, so a slow hash (Argon2, as passwords get) would add
no safety and cost every request its time. It is not keyed with the server's JWT secret
either, so that keys outlive a rotation of that secret.

A key's scopes mean what a JWT's mean (tokens/scopes.py): the request gets the same
`Principal`. Unlike JWTs, keys survive a password change (an application keeps working
while its owner rotates the password); they end when revoked, when they expire, or with
their account.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.apikeys import repository
from smsgw.apikeys.repository import Credential, KeyRow
from smsgw.db.engine import Database, delete_older
from smsgw.domain import clock
from smsgw.domain.errors import Conflict, InvalidInput, NotFound, Unauthorized
from smsgw.logs import service as event_log
from smsgw.tokens import repository as tokens
from smsgw.tokens import scopes
from smsgw.tokens.revocations import RevocationCache
from smsgw.tokens.service import Principal

log = logging.getLogger("smsgw.apikeys")
PREFIX = "smsgw_"
_KEY = re.compile(r"smsgw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
MAX_NAME = 100
#: No control characters (C0, DEL, C1) in a name: it is shown in pages, logs and terminals.
NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"
_NAME = re.compile(NAME_PATTERN)
#: How long a revoked or expired key stays listed (its owner sees what ended and when)
#: before the worker deletes it.
KEEP_ENDED = timedelta(days=90)
#: Most keys an account may have that are not revoked.
MAX_LIVE_KEYS = 100
#: A key's last use is written at most this often (per key and process; see `note_use`).
USE_INTERVAL = timedelta(minutes=1)
#: Most keys whose row a process keeps in memory; past that the map starts afresh.
MAX_CACHED = 100_000
INVALID = "Unauthorized: invalid API key"
REVOKED = "Unauthorized: API key revoked"
EXPIRED = "Unauthorized: API key expired"
NO_SUCH_KEY = "no such API key of yours"
State = Literal["live", "expired", "revoked"]


@dataclass(frozen=True)
class CreatedKey:
    """A new key: its listing, and the key itself (shown once, never stored)."""

    row: KeyRow
    key: str


def is_key(token: str) -> bool:
    """Whether a Bearer token is (meant as) an API key rather than a JWT."""
    return token.startswith(PREFIX)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def state_of(row: KeyRow, now: datetime) -> State:
    """`live`, `expired` or `revoked`."""
    if row.revoked_at is not None:
        return "revoked"
    return "expired" if row.expires_at is not None and row.expires_at <= now else "live"


def check_name(name: str) -> str:
    """The name, or InvalidInput saying what is wrong with it."""
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidInput(f"name: give 1 to {MAX_NAME} characters")
    if not _NAME.match(name):
        raise InvalidInput("name: may not contain control characters")
    return name


def check_expiry(expires_at: datetime | None, now: datetime) -> datetime | None:
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("expiresAt: must be in the future")
    return expires_at


async def record(conn: AsyncConnection, user_id: int, event: str, row: KeyRow) -> None:
    """A key event (`created`, `revoked`) in the owner's event log, in the caller's
    transaction; never the key itself."""
    log.info("api key %s: user %s, key %s", event, user_id, row.public_id)
    context: dict[str, Any] = {"key": row.public_id, "name": row.name, "scopes": row.scopes}
    message = f"API key {row.public_id} {event}"
    await event_log.record(
        conn, user_id, event_log.Module.TOKENS, event_log.Priority.INFO, message, context
    )


async def create(
    db: Database, user_id: int, name: str, requested: list[str], expires_at: datetime | None
) -> CreatedKey:
    """A new key of `user_id` named `name` with the `requested` scopes (checked against the
    catalogue here; whether the caller may grant them is the caller's to check), expiring
    at `expires_at` (None: never). InvalidInput for a bad value, Conflict for a name in use
    or too many keys."""
    now = clock.now()
    granted = scopes.check_requested(requested)
    check_name(name)
    check_expiry(expires_at, now)
    public_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    row = KeyRow(public_id, name, granted, now, expires_at, None, None)
    values = {
        "user_id": user_id, "public_id": public_id, "name": name, "secret_hash": digest(secret),
        "scopes": " ".join(granted), "created_at": now, "expires_at": expires_at,
    }  # fmt: skip
    try:
        async with db.write() as conn:
            await _check_room(conn, user_id, name)
            await repository.add(conn, values)
            await record(conn, user_id, "created", row)
    except IntegrityError:  # the same name, created at once through another node
        raise Conflict(_name_taken(name)) from None
    return CreatedKey(row, f"{PREFIX}{public_id}_{secret}")


def _name_taken(name: str) -> str:
    return f"name: you already have an API key named {name!r}; choose another or revoke it"


async def _check_room(conn: AsyncConnection, user_id: int, name: str) -> None:
    if await repository.live_named(conn, user_id, name):
        raise Conflict(_name_taken(name))
    if await repository.count_live(conn, user_id) >= MAX_LIVE_KEYS:
        raise Conflict(f"at most {MAX_LIVE_KEYS} API keys per account; revoke one first")


async def list_for_user(db: Database, user_id: int) -> list[KeyRow]:
    """The user's keys, revoked and expired ones too, newest first; never a secret."""
    async with db.read() as conn:
        return await repository.of_user(conn, user_id)


async def revoke(db: Database, user_id: int, public_id: str) -> KeyRow:
    """Revoke the user's key `public_id`, at once in every process (NotFound when the user
    has no such key; a revoked key stays revoked, as it was)."""
    async with db.write() as conn:
        row = await repository.one_of_user(conn, user_id, public_id)
        if row is None:
            raise NotFound(NO_SUCH_KEY)
        now = clock.now()
        if await repository.revoke(conn, user_id, public_id, now):
            await tokens.bump_generation(conn)  # every process drops the key it kept
            row = replace(row, revoked_at=now)
            await record(conn, user_id, "revoked", row)
    return row


async def revoke_any(db: Database, public_id: str) -> bool:
    """The operator's revocation (CLI): revoke `public_id` whoever owns it; False when no
    such key is live (unknown, or revoked already)."""
    async with db.read() as conn:
        owner = await repository.owner_of(conn, public_id)
        row = None if owner is None else await repository.one_of_user(conn, owner, public_id)
    if owner is None or row is None or row.revoked_at is not None:
        return False
    await revoke(db, owner, public_id)
    return True


async def prune_ended(db: Database) -> int:
    """Delete the keys revoked, or expired, more than KEEP_ENDED ago, in small batches
    (the retention worker): such a key is refused by its missing row as by its state.
    How many went."""
    before = clock.now() - KEEP_ENDED
    table = repository.api_keys
    return await delete_older(db, table.c.revoked_at, before) + await delete_older(
        db, table.c.expires_at, before
    )


@dataclass
class _Known:
    """A key's row as this process last read it, under the revocation cache's `epoch`."""

    credential: Credential
    epoch: int


class KeyChecker:
    """Checks the keys requests carry, for one process.

    A key's row is kept in memory after its first use, tagged with the revocation cache's
    epoch: a revocation anywhere bumps the generation (the same one JWT revocations bump),
    and the next check everywhere reads the row again. So a check costs no query while
    nothing was revoked (on SQLite), and a revoked key is refused at once."""

    def __init__(self, db: Database, revocations: RevocationCache) -> None:
        self._db = db
        self._revocations = revocations
        self._known: dict[str, _Known] = {}

    async def verify(self, key: str) -> Principal:
        """The principal of the key, or Unauthorized: unknown, wrong secret, revoked or
        expired (the last two said only to whoever holds the right secret)."""
        match = _KEY.fullmatch(key)
        if match is None:
            raise Unauthorized(INVALID)
        public_id, secret = match.groups()
        credential = await self._credential(public_id)
        if credential is None or not hmac.compare_digest(
            credential.secret_hash.encode(), digest(secret).encode()
        ):
            raise Unauthorized(INVALID)
        now = clock.now()
        if credential.revoked_at is not None:
            raise Unauthorized(REVOKED)
        if credential.expires_at is not None and credential.expires_at <= now:
            raise Unauthorized(EXPIRED)
        await self._note_use(public_id, credential, now)
        return Principal(credential.user_id, credential.scopes)

    async def _credential(self, public_id: str) -> Credential | None:
        epoch = await self._revocations.epoch()
        known = self._known.get(public_id)
        if known is not None and known.epoch == epoch:
            return known.credential
        found = await self._db.read_unit(lambda c: repository.credential(c, public_id))
        if found is None:
            self._known.pop(public_id, None)
            return None
        if len(self._known) >= MAX_CACHED:
            self._known.clear()
        # Tagged with the epoch read before the row: a revocation committed after that
        # read makes a newer epoch, so the next check reads the row again.
        self._known[public_id] = _Known(found, epoch)
        return found

    async def _note_use(self, public_id: str, credential: Credential, now: datetime) -> None:
        """Record the use when the last one known is USE_INTERVAL old or more: one write per
        key and minute in this process at most, and the condition of the update makes a
        write that another process made meanwhile stand."""
        last = credential.last_used_at
        if last is not None and now - last < USE_INTERVAL:
            return
        known = self._known.get(public_id)
        if known is not None and known.credential is credential:
            known.credential = replace(credential, last_used_at=now)
        before = now - USE_INTERVAL
        # Named: two nodes' batches noting two keys' uses in opposite orders would deadlock.
        await self._db.write_unit(
            lambda c: repository.note_use(c, public_id, now, before),
            locks=[f"api key {public_id}"],
        )
