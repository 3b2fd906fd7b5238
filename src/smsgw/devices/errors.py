"""Device errors."""

from __future__ import annotations

from smsgw.domain.errors import Forbidden, NotFound


class UnknownDevice(NotFound):
    def __init__(self) -> None:
        super().__init__("device not found")


class NotThisDevice(Forbidden):
    def __init__(self) -> None:
        super().__init__("Forbidden: the id is not this device's")
