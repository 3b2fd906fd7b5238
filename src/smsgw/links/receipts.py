"""Delivery receipts (deliver_sm from the carrier about a part it accepted): which part, and
whether it reached the phone (SMPP 3.4 appendix B and 5.3.2.35).

The receipt names the part by `receipted_message_id` (TLV) or the `id:` of its text, and its
fate by `message_state` (TLV) or the `stat:` of its text; the text's `err:` is the carrier's
error code. The TLVs win where both are present.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: esm_class message type bits (SMPP 3.4, 5.2.12): 0x04 MC delivery receipt; 0x08, 0x10,
#: 0x20 acknowledgements and intermediate notifications, which are receipts too.
_TYPE_MASK = 0x3C
_ID = re.compile(r"\bid:(\S+)", re.IGNORECASE)
_STAT = re.compile(r"\bstat:(\w+)", re.IGNORECASE)
_ERR = re.compile(r"\berr:(\w+)", re.IGNORECASE)
#: The most characters of a carrier's id of a part (SMPP 3.4's message_id: a C-Octet String
#: of 65 octets at most; `link_parts.smsc_id`), and of a receipt's `stat:` and `err:` kept.
ID_LENGTH = 65
WORD_LENGTH = 16
#: message_state (5.2.28) as the text's stat: words.
_STATES = {
    1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD",
    7: "UNKNOWN", 8: "REJECTD",
}  # fmt: skip
DELIVERED = "DELIVRD"
#: States on the way, not final: a receipt that says one is not applied.
PASSING = frozenset({"ENROUTE", "ACCEPTD"})
#: Final states other than delivered: the part did not reach the phone.
FAILED = frozenset({"EXPIRED", "DELETED", "UNDELIV", "UNKNOWN", "REJECTD"})


@dataclass(slots=True)  # not frozen: made per message, and a frozen __init__ costs 4x
class Receipt:
    """A receipt: the carrier's id of the part, its state word (DELIVRD, UNDELIV, ...), and
    the carrier's error code (None when it gave none)."""

    smsc_id: str
    stat: str
    err: str | None

    @property
    def final(self) -> bool:
        return self.stat == DELIVERED or self.stat in FAILED

    @property
    def delivered(self) -> bool:
        return self.stat == DELIVERED

    def error(self) -> str:
        """The recipient's error for a part that was not delivered."""
        code = f" err:{self.err}" if self.err else ""
        return f"carrier receipt: stat:{self.stat}{code}"


def carrier_id(given: str) -> str:
    """A carrier's id of a part as smsgw keeps it, from a submit_sm_resp or a receipt alike:
    up to its first NUL (a C-Octet String ends there), without spaces around it, and at
    most ID_LENGTH characters (a longer one breaks SMPP 3.4; cut the same way on both sides,
    its receipts still find the part)."""
    return given.split("\0", 1)[0].strip()[:ID_LENGTH]


def is_receipt(
    esm_class: int, receipted_id: str | None, message_state: int | None, text: bytes
) -> bool:
    """Whether a deliver_sm is a receipt: its esm_class says so, or (esm_class says a plain
    message) it has a receipted_message_id and a state, in its message_state or its text's
    `stat:`. A plain message with a receipted_message_id and no state is an incoming SMS."""
    if esm_class & _TYPE_MASK:
        return True
    if receipted_id is None:
        return False
    return message_state in _STATES or _STAT.search(text.decode("latin-1")) is not None


def parse(text: bytes, receipted_id: str | None, message_state: int | None) -> Receipt | None:
    """The receipt in a deliver_sm, or None when it names no part. Its `stat` is "" when it
    gives no state (neither a message_state SMPP 3.4 defines nor `stat:`): not final."""
    words = text.decode("latin-1")
    found_id = _ID.search(words)
    smsc_id = carrier_id(receipted_id or "") or carrier_id(found_id.group(1) if found_id else "")
    if not smsc_id:
        return None
    stat = _STATES.get(message_state or 0)
    if stat is None:
        found_stat = _STAT.search(words)
        stat = found_stat.group(1).upper()[:WORD_LENGTH] if found_stat else ""
    found_err = _ERR.search(words)
    return Receipt(smsc_id, stat, found_err.group(1)[:WORD_LENGTH] if found_err else None)
