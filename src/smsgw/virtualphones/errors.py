"""Virtual phone errors."""

from __future__ import annotations

from smsgw.config import Mode, Settings
from smsgw.domain.errors import Forbidden, InvalidInput


class VirtualPhonesOff(Forbidden):
    """Virtual phones are off on this server (production mode, or turned off)."""

    def __init__(self, settings: Settings) -> None:
        why = (
            "SMSGW_VIRTUAL_PHONES=false"
            if settings.virtual_phones is False
            else f"this server runs in {Mode(settings.mode).value} mode"
        )
        super().__init__(
            f"virtual phones are off ({why}): they are for development. To use them, start "
            "smsgw with SMSGW_MODE=development or SMSGW_VIRTUAL_PHONES=true"
        )


class NotVirtual(InvalidInput):
    def __init__(self) -> None:
        super().__init__("this phone is not a virtual phone: only a virtual one can be given SMS")
