"""Account errors."""

from __future__ import annotations

from smsgw.domain.errors import Conflict, InvalidInput, NotFound


class LoginTaken(Conflict):
    def __init__(self, login: str) -> None:
        super().__init__(f"login {login!r} is already taken")


class UnknownLogin(NotFound):
    def __init__(self, login: str) -> None:
        super().__init__(f"no user with login {login!r}")


class BadLogin(InvalidInput):
    pass


class WeakPassword(InvalidInput):
    pass


class StaleCredentials(Exception):
    """Credentials taken from the cache without a read no longer hold (accounts/service
    .confirm): the caller authenticates the usual way, and answers as that does. Not a
    domain error: no answer is ever rendered from it."""

    def __init__(self, login: str) -> None:
        super().__init__(f"the stored credentials of {login!r} changed")
