"""Token use cases: issue a scoped pair, exchange a refresh token once, revoke, verify.

Tokens are HS256 JWTs with upstream's claims: `jti`, `iss`, `sub` and `user_id` (the user
id), `iat`, `exp`, `scopes`; a refresh token carries `scopes: ["tokens:refresh"]` and
`original_scopes`. Every issued token has a row (tokens table) by its jti; the refresh row
holds the SHA-256 of its token and its parent access jti.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from smsgw.config import Settings
from smsgw.db.engine import Database
from smsgw.domain import clock, ids
from smsgw.domain.errors import Unauthorized
from smsgw.tokens import repository, scopes
from smsgw.tokens.revocations import RevocationCache
from smsgw.tokens.secret import signing_key

log = logging.getLogger("smsgw.tokens")
ISSUER = "smsgw"
ALGORITHM = "HS256"
INVALID = "Unauthorized: invalid, expired or revoked token"


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


def record(event: str, user_id: int, jti: str, **details: Any) -> None:
    """The one place token events pass through (`issued`, `refreshed`, `revoked`): the
    event log hooks in here. Tokens themselves are never passed or logged."""
    log.info("token %s: user %s, jti %s %s", event, user_id, jti, details or "")


def _expiry(now: datetime, ttl: int) -> int:
    """The `exp` claim: whole seconds, as JWT wants (and as `expires_at` reports)."""
    return int(now.timestamp()) + ttl


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenService:
    """Signs and checks tokens for one process; `close()` when the application stops."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self._key = signing_key(settings)
        self._db = db
        self._access_ttl = settings.jwt_access_ttl_seconds
        self._refresh_ttl = settings.jwt_refresh_ttl_seconds
        self.revocations = RevocationCache(db.path)

    def close(self) -> None:
        self.revocations.close()

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
        if not isinstance(claims.get("scopes"), list) or not isinstance(claims.get("user_id"), int):
            raise Unauthorized(INVALID)
        return claims

    async def issue(self, user_id: int, granted: list[str], ttl: int | None = None) -> IssuedPair:
        """A new access token for `granted` scopes (already checked) living `ttl` seconds,
        at most the configured lifetime (0 or None: that lifetime), and its refresh token."""
        access_ttl = min(ttl, self._access_ttl) if ttl else self._access_ttl
        now = clock.now()
        pair, rows = self._new_pair(user_id, granted, access_ttl, now)
        async with self._db.write() as conn:
            await repository.delete_expired(conn, user_id, now)
            await repository.add(conn, rows)
        record("issued", user_id, pair.id, scopes=granted, ttl=access_ttl)
        return pair

    def _new_pair(
        self, user_id: int, granted: list[str], access_ttl: int, now: datetime
    ) -> tuple[IssuedPair, list[dict[str, Any]]]:
        """A signed pair and the two rows that record it."""
        access_id, refresh_id = ids.random_token(), ids.random_token()
        access = self._sign(user_id, access_id, now, access_ttl, scopes=granted)
        refresh = self._sign(
            user_id, refresh_id, now, self._refresh_ttl,
            scopes=[scopes.REFRESH], original_scopes=granted,
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
            pair, rows = self._new_pair(row.user_id, row.scopes, self._access_ttl, now)
            await repository.add(conn, rows)
        record("refreshed", row.user_id, pair.id, refresh_jti=jti)
        return pair

    async def revoke(self, user_id: int, jti: str) -> None:
        """Revoke the user's token `jti` and the refresh token issued with it (nothing
        happens for an unknown jti or another user's). Effective at once in every process."""
        async with self._db.write() as conn:
            revoked = await repository.revoke(conn, user_id, jti, clock.now())
            if revoked:
                await repository.bump_generation(conn)
        if revoked:
            record("revoked", user_id, jti, rows=revoked)

    async def list_live(self, user_id: int) -> list[repository.LiveToken]:
        """The user's access tokens that still work (not revoked, not expired), newest
        first; ids, scopes and times only, never a token."""
        async with self._db.read() as conn:
            return await repository.live_access(conn, user_id, clock.now())

    def verify(self, token: str) -> Principal:
        """The principal of a Bearer token, or Unauthorized. No query while nothing was
        revoked anywhere since the last check (see revocations.py)."""
        claims = self._decode(token)
        granted = frozenset(str(scope) for scope in claims["scopes"])
        jti = str(claims["jti"])
        if scopes.REFRESH not in granted and self.revocations.is_revoked(jti):
            raise Unauthorized(INVALID)
        return Principal(int(claims["user_id"]), granted, jti)
