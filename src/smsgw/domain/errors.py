"""Domain errors and the one catalog of the HTTP status each kind is answered with (both
faces, api/ and web/, answer with `status_of`)."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error whose message is safe to show to the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    """The request is well-formed but a value breaks a rule (400)."""


class NotFound(DomainError):
    """The thing does not exist, or belongs to someone else (404)."""


class Conflict(DomainError):
    """The request clashes with the current state (409)."""


class Unauthorized(DomainError):
    """Missing or wrong credentials (401)."""


class Forbidden(DomainError):
    """Authenticated, but not allowed to do this (403)."""


class TooLarge(DomainError):
    """The input is larger than the server takes (413)."""


class TooManyRequests(DomainError):
    """Slow down: try again after `retry_after` seconds (429)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


STATUS_OF: dict[type[DomainError], int] = {
    InvalidInput: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    TooManyRequests: 429,
}


def status_of(error: DomainError) -> int:
    """The HTTP status `error` is answered with (400 for a kind not in the catalog)."""
    for kind in type(error).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind]
    return 400
