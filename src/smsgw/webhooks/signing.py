"""Webhook signatures, as the Android app makes them (protocol §4, upstream §7.2).

`X-Signature` is the lowercase hex HMAC-SHA256, keyed with the user's signing key, of the raw
body followed by the `X-Timestamp` value (Unix seconds, as text).
"""

from __future__ import annotations

import hashlib
import hmac


def sign(key: str, body: bytes, timestamp: str) -> str:
    """The `X-Signature` of `body` sent with `X-Timestamp: timestamp`."""
    return hmac.new(key.encode(), body + timestamp.encode(), hashlib.sha256).hexdigest()


def verify(key: str, body: bytes, timestamp: str, signature: str) -> bool:
    """Whether `signature` is right for `body` and `timestamp` (constant-time comparison)."""
    return hmac.compare_digest(sign(key, body, timestamp), signature.strip().lower())


def headers(key: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The signature headers of one request."""
    stamp = str(timestamp)
    return {"X-Timestamp": stamp, "X-Signature": sign(key, body, stamp)}
