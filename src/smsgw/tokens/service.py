"""Token use cases: issue a scoped pair, exchange a refresh token once, revoke, verify.

Tokens are HS256 JWTs with upstream's claims: `jti`, `iss`, `sub` and `user_id` (the user
id), `iat`, `exp`, `scopes`; a refresh token carries `scopes: ["tokens:refresh"]` and
`original_scopes`. Every issued token has a row (tokens table) by its jti; the refresh row
holds the SHA-256 of its token and its parent access jti.

Every token also carries `stamp`: a keyed hash of its user's password hash when it was
issued. A password change makes a new password hash, so every older token stops matching at
once; a deleted user has no stamp at all (and a new user reusing the id another).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy.ext.asyncio import AsyncConnection

from smsgw.config import Settings
from smsgw.db.engine import Database, delete_older
from smsgw.domain import clock, ids
from smsgw.domain.errors import Unauthorized
from smsgw.logs import service as event_log
from smsgw.tokens import repository, rotation, scopes
from smsgw.tokens.repository import TokenRow
from smsgw.tokens.revocations import RevocationCache
from smsgw.tokens.secret import signing_key

log = logging.getLogger("smsgw.tokens")
ISSUER = "smsgw"
ALGORITHM = "HS256"
INVALID = "Unauthorized: invalid, expired or revoked token"
MAX_USER_ID = 2**63 - 1


@dataclass(frozen=True)
class Principal:
    """Who is calling and what they may do. Basic credentials hold `all:any`."""

    user_id: int
    scopes: frozenset[str]
    token_id: str | None = None


@dataclass(frozen=True)
class IssuedPair:
    id: str
    access_token: str
    refresh_token: str
    expires_at: datetime


async def record(
    conn: AsyncConnection, event: str, user_id: int, jti: str, granted: list[str], **details: Any
) -> None:
    """The one place token events pass through (`issued`, `refreshed`, `revoked`): an entry
    in the owner's event log, in the caller's transaction. Tokens themselves are never
    passed or logged; `details` must be JSON values."""
    log.info("token %s: user %s, jti %s %s", event, user_id, jti, details or "")
    context = {"jti": jti, "scopes": granted, **details}
    message = f"token {jti} {event}"
    await event_log.record(
        conn, user_id, event_log.Module.TOKENS, event_log.Priority.INFO, message, context
    )


async def revoke(db: Database, user_id: int, jti: str) -> int:
    """Revoke the user's token `jti` and the refresh token issued with it (nothing happens
    for an unknown jti or another user's); how many rows. Effective at once everywhere."""
    async with db.write() as conn:
        granted = await repository.scopes_of(conn, user_id, jti)
        revoked = await repository.revoke(conn, user_id, jti, clock.now())
        if revoked:
            await repository.bump_generation(conn)
            await record(conn, "revoked", user_id, jti, granted)
    return revoked


async def revoke_any(db: Database, jti: str) -> bool:
    """The operator's revocation (CLI): revoke `jti` whoever owns it; False if unknown."""
    async with db.read() as conn:
        owner = await repository.owner_of(conn, jti)
    return owner is not None and await revoke(db, owner, jti) > 0


async def end_all(conn: AsyncConnection, user_id: int, reason: str) -> None:
    """Revoke every token of the user, in the caller's transaction (password change,
    account deletion). Their access tokens also stop matching their new stamp (or none)."""
    now = clock.now()
    live = await repository.live_access(conn, user_id, now)
    await repository.revoke_all(conn, user_id, now)
    await repository.bump_generation(conn)
    for token in live:
        await record(conn, "revoked", user_id, token.id, token.scopes, reason=reason)


async def user_deleted(conn: AsyncConnection) -> None:
    """Tell every process, in the deleting transaction, that a user's tokens are void (their
    rows go with the user; the missing stamp refuses the access tokens still out there)."""
    await repository.bump_generation(conn)


async def prune_expired(db: Database) -> int:
    """Delete the records of tokens past their expiry, revoked or not, in small batches:
    an expired token is refused by its `exp` alone, so its row serves nothing (`issue`
    sweeps one user's; this, everyone's). A revoked token not yet expired is kept: its
    row is what refuses it. How many went."""
    return await delete_older(db, repository.tokens.c.expires_at, clock.now())


async def list_for_user(db: Database, user_id: int) -> list[TokenRow]:
    """The user's tokens (access and refresh, also revoked ones, and expired ones until the
    worker deletes them), newest first."""
    async with db.read() as conn:
        return await repository.of_user(conn, user_id)


def _expiry(now: datetime, ttl: int) -> int:
    """The `exp` claim: whole seconds, as JWT wants (and as `expires_at` reports)."""
    return int(now.timestamp()) + ttl


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _well_formed(claims: dict[str, Any]) -> bool:
    """Whether a signed token's claims have the types smsgw gives them: a user id that is a
    row id (1 to 2**63 - 1, SQLite's integers; not a bool), a list of scopes, an ASCII jti
    and stamp (other text could not even be encoded to be looked up or compared)."""
    user_id, jti, stamp = claims.get("user_id"), claims.get("jti"), claims.get("stamp", "")
    return (
        type(user_id) is int
        and 1 <= user_id <= MAX_USER_ID
        and isinstance(claims.get("scopes"), list)
        and isinstance(jti, str)
        and jti.isascii()
        and (not isinstance(stamp, str) or stamp.isascii())
    )


class TokenService:
    """Signs and checks tokens for one process; `close()` when the application stops."""

    def derive(self, purpose: str, data: str) -> str:
        """A keyed digest of `data` for `purpose` (hex, 64 characters), under the server's
        secret: so a copy of the database alone cannot produce it."""
        message = purpose.encode() + b":" + data.encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def __init__(self, settings: Settings, db: Database) -> None:
        self._key = signing_key(settings)
        previous = settings.jwt_previous_secret
        self._previous = previous.get_secret_value().encode() if previous else None
        self._grace = timedelta(seconds=settings.hook_url_grace_seconds)
        self._previous_until: datetime | None = None
        self._db = db
        self._access_ttl = settings.jwt_access_ttl_seconds
        self._refresh_ttl = settings.jwt_refresh_ttl_seconds
        self.revocations = RevocationCache(db, self.stamp)

    def previous_derive(self) -> Callable[[str, str], str] | None:
        """`derive` under the secret before a rotation (`SMSGW_JWT_PREVIOUS_SECRET`) while
        its grace period lasts (tokens/rotation.py), else None. Only phones' hook URLs use it:
        tokens signed with the old secret stay invalid."""
        until = self._previous_until
        if self._previous is None or until is None or clock.now() >= until:
            return None
        previous = self._previous

        def derive(purpose: str, data: str) -> str:
            message = purpose.encode() + b":" + data.encode()
            return hmac.new(previous, message, hashlib.sha256).hexdigest()

        return derive

    def fingerprints(self) -> tuple[str, str | None]:
        """The current secret's fingerprint and the previous one's (tokens/rotation.py)."""
        previous = rotation.fingerprint(self._previous) if self._previous else None
        return rotation.fingerprint(self._key), previous

    async def note_secret(self) -> None:
        """Learn since when the current secret is current (once, at start); OtherSecret
        when the database's other nodes sign with another (tokens/rotation.py)."""
        since = await rotation.current_since(self._db, *self.fingerprints())
        self._previous_until = since + self._grace

    def stamp(self, password_hash: str) -> str:
        """The `stamp` claim for a user whose password hash is `password_hash`."""
        mac = hmac.new(self._key, b"stamp:" + password_hash.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:16]).decode().rstrip("=")

    async def _stamp_now(self, conn: AsyncConnection, user_id: int) -> str:
        stored = await repository.current_password_hash(conn, user_id)
        if stored is None:
            raise Unauthorized(INVALID)
        return self.stamp(stored)

    def _sign(self, user_id: int, jti: str, now: datetime, ttl: int, **claims: Any) -> str:
        payload = {
            "jti": jti,
            "iss": ISSUER,
            "sub": str(user_id),
            "user_id": user_id,
            "iat": int(now.timestamp()),
            "exp": _expiry(now, ttl),
            **claims,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM)

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "jti", "sub", "iss"]},
            )
        except jwt.PyJWTError:
            raise Unauthorized(INVALID) from None
        if not _well_formed(claims):
            raise Unauthorized(INVALID)
        return claims

    async def issue(self, user_id: int, granted: list[str], ttl: int | None = None) -> IssuedPair:
        """A new access token for `granted` scopes (already checked) living `ttl` seconds,
        at most the configured lifetime (0 or None: that lifetime), and its refresh token."""
        access_ttl = min(ttl, self._access_ttl) if ttl else self._access_ttl
        now = clock.now()
        async with self._db.write() as conn:
            stamp = await self._stamp_now(conn, user_id)
            pair, rows = self._new_pair(user_id, granted, access_ttl, now, stamp)
            await repository.delete_expired(conn, user_id, now)
            await repository.add(conn, rows)
            await record(conn, "issued", user_id, pair.id, granted, ttl=access_ttl)
        return pair

    def _new_pair(
        self, user_id: int, granted: list[str], access_ttl: int, now: datetime, stamp: str
    ) -> tuple[IssuedPair, list[dict[str, Any]]]:
        """A signed pair and the two rows that record it."""
        access_id, refresh_id = ids.random_token(), ids.random_token()
        access = self._sign(user_id, access_id, now, access_ttl, scopes=granted, stamp=stamp)
        refresh = self._sign(
            user_id, refresh_id, now, self._refresh_ttl,
            scopes=[scopes.REFRESH], original_scopes=granted, stamp=stamp,
        )  # fmt: skip
        expires_at = datetime.fromtimestamp(_expiry(now, access_ttl), UTC)
        common = {"user_id": user_id, "scopes": " ".join(granted), "created_at": now}
        access_row = {"id": access_id, "token_use": repository.ACCESS, "parent_jti": None}
        refresh_row = {"id": refresh_id, "token_use": repository.REFRESH, "parent_jti": access_id}
        rows = [
            {**common, **access_row, "token_hash": None, "expires_at": expires_at},
            {
                **common,
                **refresh_row,
                "token_hash": _digest(refresh),
                "expires_at": now + timedelta(seconds=self._refresh_ttl),
            },
        ]
        return IssuedPair(access_id, access, refresh, expires_at), rows

    async def refresh(self, token: str) -> IssuedPair:
        """Exchange a refresh token for a new pair, once: a used, revoked, expired or unknown
        refresh token is Unauthorized. The new access token gets the original scopes and the
        configured lifetime; the old access token stays valid until it expires."""
        claims = self._decode(token)
        if claims["scopes"] != [scopes.REFRESH]:
            raise Unauthorized(INVALID)
        jti = str(claims["jti"])
        now = clock.now()
        async with self._db.write() as conn:
            row = await repository.unused_refresh(conn, jti)
            if row is None or not hmac.compare_digest(row.token_hash, _digest(token)):
                raise Unauthorized(INVALID)
            if row.expires_at <= now or not await repository.mark_used(conn, jti, now):
                raise Unauthorized(INVALID)
            stamp = await self._stamp_now(conn, row.user_id)
            pair, rows = self._new_pair(row.user_id, row.scopes, self._access_ttl, now, stamp)
            await repository.add(conn, rows)
            await record(conn, "refreshed", row.user_id, pair.id, row.scopes, refresh_jti=jti)
        return pair

    async def revoke(self, user_id: int, jti: str) -> None:
        """`revoke` (module level) on this service's database."""
        await revoke(self._db, user_id, jti)

    async def list_live(self, user_id: int) -> list[repository.LiveToken]:
        """The user's access tokens that still work (not revoked, not expired), newest
        first; ids, scopes and times only, never a token."""
        async with self._db.read() as conn:
            return await repository.live_access(conn, user_id, clock.now())

    async def verify(self, token: str) -> Principal:
        """The principal of a Bearer token, or Unauthorized: also when its user was deleted
        or changed password since. No query while nothing was revoked, no password changed
        and no account deleted anywhere since the last check (see revocations.py)."""
        claims = self._decode(token)
        granted = frozenset(str(scope) for scope in claims["scopes"])
        jti, user_id = str(claims["jti"]), int(claims["user_id"])
        if scopes.REFRESH in granted:
            return Principal(user_id, granted, jti)
        if not await self.revocations.accepts(jti, user_id, claims.get("stamp")):
            raise Unauthorized(INVALID)
        return Principal(user_id, granted, jti)
