"""The HS256 signing secret: `SMSGW_JWT_SECRET`, or one generated once and kept in a file.

The generated secret lives in `<data dir>/jwt-secret` with mode 0600, so tokens survive
restarts and every process sharing that data directory signs with the same key. It is not
kept in the database: a copy of the database alone must not let anyone mint tokens.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from smsgw.config import Settings

FILE_NAME = "jwt-secret"
MIN_LENGTH = 32


def signing_key(settings: Settings) -> bytes:
    """The configured secret, else the one in the data directory (created on first call)."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value().encode()
    return _file_secret(settings.data_dir / FILE_NAME)


def _file_secret(path: Path) -> bytes:
    if not path.exists():
        _create(path)
    value = path.read_text(encoding="ascii").strip()
    if len(value) < MIN_LENGTH:
        raise RuntimeError(f"{path} holds no usable secret; delete it to have a new one made")
    return value.encode()


def _create(path: Path) -> None:
    """Write a new secret atomically: a process starting at the same time either wins the
    link or reads the winner's complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
