"""Domain errors. Each kind maps to one HTTP status in api/errors.py (the one catalog)."""

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


class TooManyRequests(DomainError):
    """Slow down: try again after `retry_after` seconds (429)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
