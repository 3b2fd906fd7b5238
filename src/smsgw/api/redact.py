"""Keep secrets that travel in URL paths out of logs.

The endpoints phones post their events to carry a secret in the path
(`.../hooks/{device}/{secret}`, see api/mobile/hooks.py), and a path ends up in the access
log and in the log of an unhandled error. Both pass through `redact`.
"""

from __future__ import annotations

import logging
import re

_HOOK_SECRET = re.compile(r"(/hooks/[^/?#]+/)[^/?#]+")


def redact(path: str) -> str:
    """`path` with a hook secret replaced by `***`."""
    return _HOOK_SECRET.sub(r"\1***", path)


class RedactingFilter(logging.Filter):
    """For uvicorn's access log, whose records carry the request path among their args."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install() -> None:
    """Attach the filter to uvicorn's access logger, once per process."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactingFilter) for f in access.filters):
        access.addFilter(RedactingFilter())
