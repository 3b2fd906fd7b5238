"""Link errors."""

from __future__ import annotations

from smsgw.domain.errors import NotFound


class UnknownLink(NotFound):
    def __init__(self) -> None:
        super().__init__("link not found")
