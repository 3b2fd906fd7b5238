"""Identifiers and secrets."""

from __future__ import annotations

import os
import re
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


#: Characters of a client's own id (a message's or a webhook's `id`): the id becomes a URL
#: path segment (`GET /messages/{id}`), so only what a segment holds as it is (RFC 3986's
#: unreserved characters, sub-delimiters, `:` and `@`); `/`, `?`, `#`, `%` and space are not.
CLIENT_ID_CHARACTERS = "A-Za-z0-9-._~!$&'()*+,;=:@"
_CHAR = r"[A-Za-z0-9\-._~!$&'()*+,;=:@]"
_NOT_DOT = r"[A-Za-z0-9\-_~!$&'()*+,;=:@]"
#: The same as a regular expression (no lookahead, for every JSON Schema tool): those
#: characters, but not `.` or `..` alone, which clients resolve away as path segments.
CLIENT_ID_PATTERN = rf"^(?:{_NOT_DOT}|\.\.?{_NOT_DOT}|\.\.\.){_CHAR}*$"
CLIENT_ID_RULE = (
    "may hold only letters, digits and - . _ ~ ! $ & ' ( ) * + , ; = : @ "
    "(it is a URL path segment), and may not be . or .."
)
_CLIENT_ID = re.compile(CLIENT_ID_PATTERN)


def check_client_id(value: str) -> str:
    """`value` when it is a valid client id (CLIENT_ID_PATTERN), else ValueError."""
    if not _CLIENT_ID.fullmatch(value):  # not match: `$` would let a final newline in
        raise ValueError(CLIENT_ID_RULE)
    return value
