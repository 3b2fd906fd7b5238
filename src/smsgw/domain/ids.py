"""Identifiers and secrets."""

from __future__ import annotations

import os
import secrets
import string
import time
import uuid

_ALPHABET = string.ascii_letters + string.digits


def message_id() -> str:
    """A new message id: a UUID string, as the seed document shows, of version 7 (RFC 9562).

    Version 7 starts with the time in milliseconds, so ids made one after the other sort
    together: each new message lands at the end of the (owner, id) index instead of on a
    random page of it, which keeps the pages a COMMIT writes few and the index cached as the
    table grows (docs/performance.md). The other 74 bits are random, as in version 4.
    """
    return str(uuid7())


def uuid7() -> uuid.UUID:
    """RFC 9562 version 7: 48 bits of Unix time in ms, version, 12 random bits, variant,
    62 random bits. (Python 3.14's `uuid.uuid7` has the same fields, and puts a counter in
    the first random bits to keep ids of one millisecond in order too.)"""
    random_bits = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 of them used
    value = (time.time_ns() // 1_000_000) << 80
    value |= 0x7 << 76 | (random_bits >> 64 & 0xFFF) << 64  # version, rand_a
    value |= 0b10 << 62 | random_bits & (1 << 62) - 1  # variant, rand_b
    return uuid.UUID(int=value)


def random_token(length: int = 21) -> str:
    """A random alphanumeric token (device ids, device tokens)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def generated_password() -> str:
    """A password for generated accounts: 20 characters, about 119 bits."""
    return random_token(20)
