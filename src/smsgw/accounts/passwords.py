"""Password hashing (Argon2id) and the verified-credential cache.

Hashing is slow on purpose, so a Basic-auth request must not pay for it every time. Once a
(login, password) pair has verified against a stored hash, a keyed digest of the pair is
remembered together with that stored hash. A later request with the same pair is accepted
when the stored hash it reads from the database is still the remembered one: a password
change or a deleted account (from any process or node) makes the entry useless at once.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified against when the login is unknown, so both paths cost the same time. Made on
    first use (the server makes it on start: `warm_up`), not on import: a CLI command that
    never verifies a password should not pay a hash for it."""
    return _hasher.hash(secrets.token_hex(16))


def warm_up() -> None:
    """Make the dummy hash now, so that the first unknown login costs one hash, as all do."""
    _dummy_hash()


def set_hasher(hasher: PasswordHasher) -> None:
    """Hash new passwords with `hasher` in this process (tests only: cheaper parameters).

    Verifying reads the parameters from the stored hash, so any process verifies these.
    """
    global _hasher
    _hasher = hasher
    _dummy_hash.cache_clear()  # made again, with these parameters, on first use


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when `password` matches; always spends one hash, even for unknown logins."""
    try:
        return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


class CredentialCache:
    """Remembers verified (login, password) pairs by a keyed digest, with LRU eviction."""

    def __init__(self, max_size: int) -> None:
        self._key = secrets.token_bytes(32)
        self._max_size = max_size
        self._entries: OrderedDict[bytes, tuple[str, int]] = OrderedDict()

    def digest(self, login: str, password: str) -> bytes:
        """The keyed digest naming this pair (the pair itself is never kept)."""
        pair = login.encode() + b"\0" + password.encode()
        # The one-shot form: the same HMAC-SHA256, without building an hmac object (every
        # Basic-auth request works this out).
        return hmac.digest(self._key, pair, "sha256")

    def is_verified(self, login: str, password: str, stored_hash: str | None) -> bool:
        """True when this exact pair verified earlier against this exact stored hash. An
        entry for another hash (the password changed since) or for a login gone (None) is
        dropped: it would only be recalled (`recall`) to fail its confirmation again."""
        digest = self.digest(login, password)
        remembered = self._entries.get(digest)
        if remembered is None:
            return False
        if stored_hash is not None and hmac.compare_digest(remembered[0], stored_hash):
            return True
        if self._entries.get(digest) is remembered:
            del self._entries[digest]
        return False

    def recall(self, login: str, password: str) -> tuple[str, int] | None:
        """(stored hash, user id) this exact pair verified against earlier, read then: a
        caller that takes it without reading the login again must confirm it in its own
        transaction (accounts/service.confirm)."""
        return self._entries.get(self.digest(login, password))

    def remember(self, login: str, password: str, stored_hash: str, user_id: int) -> None:
        if self._max_size == 0:
            return
        digest = self.digest(login, password)
        self._entries[digest] = (stored_hash, user_id)
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max_size:
            self._entries.popitem(last=False)
