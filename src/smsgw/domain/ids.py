"""Identifiers and secrets."""

from __future__ import annotations

import secrets
import string
import uuid

_ALPHABET = string.ascii_letters + string.digits


def message_id() -> str:
    """A new message id: a UUID4 string, as the seed document shows."""
    return str(uuid.uuid4())


def random_token(length: int = 21) -> str:
    """A random alphanumeric token (device ids, device tokens)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def generated_password() -> str:
    """A password for generated accounts: 20 characters, about 119 bits."""
    return random_token(20)
