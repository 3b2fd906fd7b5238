"""The scope names a token can carry (upstream's catalogue) and what each grants.

`all:any` is the wildcard: it satisfies every scope check except an exact one. Basic
credentials hold it. `tokens:refresh` is the system scope of refresh tokens: it cannot be
requested and only an exact check (the refresh route) accepts it.
"""

from __future__ import annotations

from collections.abc import Collection

from smsgw.domain.errors import InvalidInput

ALL = "all:any"
REFRESH = "tokens:refresh"
MANAGE = "tokens:manage"

#: Every scope a token may be issued with.
KNOWN: frozenset[str] = frozenset(
    {
        "messages:send",
        "messages:read",
        "messages:list",
        "messages:cancel",
        "messages:export",
        "devices:list",
        "devices:delete",
        "devices:write",
        "webhooks:list",
        "webhooks:write",
        "webhooks:delete",
        "settings:read",
        "settings:write",
        "inbox:list",
        "inbox:refresh",
        "logs:read",
        "opt-outs:list",
        "opt-outs:write",
        MANAGE,
        ALL,
    }
)
MAX_SCOPES = 32


def grants(held: Collection[str], required: str) -> bool:
    """True when scopes `held` allow an action that needs `required` (the wildcard counts)."""
    return required in held or (ALL in held and required != REFRESH)


def check_requested(requested: list[str]) -> list[str]:
    """The requested scopes, de-duplicated in order; InvalidInput naming any unknown one."""
    if not requested:
        raise InvalidInput("scopes: give at least one scope")
    if len(requested) > MAX_SCOPES:
        raise InvalidInput(f"scopes: at most {MAX_SCOPES} scopes")
    unknown = [scope for scope in requested if scope not in KNOWN]
    if unknown:
        known = ", ".join(sorted(KNOWN))
        raise InvalidInput(f"scopes: unknown scope {unknown[0]!r}; known scopes: {known}")
    return list(dict.fromkeys(requested))
