"""A virtual phone's outcome script: what happens to each message it sends, in turn.

The script is a comma-separated list of outcomes, used one per message and cycled:

- `delivered`: Sent, then Delivered (only Sent when the message asks for no delivery report);
- `sent`: Sent, and no delivery report ever comes (the message stays Sent);
- `failed` or `failed:REASON`: Failed, with REASON as the recipients' error (the radio
  refused it: no Sent). A reason holds no comma.

So `delivered,delivered,failed:No service` delivers two messages, fails the third, and
starts again. Spaces around outcomes are ignored; the words are case-insensitive.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from smsgw.domain.errors import InvalidInput

MAX_LENGTH = 512
MAX_STEPS = 100
REASON_LENGTH = 256
DEFAULT_REASON = "virtual phone: failed as scripted"


class Kind(StrEnum):
    DELIVERED = "delivered"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    reason: str | None = None


def _step(text: str) -> Outcome:
    word, colon, reason = text.strip().partition(":")
    try:
        kind = Kind(word.strip().lower())
    except ValueError:
        raise InvalidInput(
            f"outcome {text.strip()!r}: use delivered, sent, failed or failed:REASON"
        ) from None
    reason = reason.strip()
    if kind != Kind.FAILED:
        if colon:
            raise InvalidInput(f"outcome {text.strip()!r}: only failed takes a reason")
        return Outcome(kind)
    if len(reason) > REASON_LENGTH:
        raise InvalidInput(f"outcome {text.strip()!r}: a reason is at most 256 characters")
    return Outcome(kind, reason or DEFAULT_REASON)


def parse(script: str) -> list[Outcome]:
    """The outcomes of `script`; InvalidInput naming what is wrong."""
    if not script.strip():
        raise InvalidInput("outcome: required, e.g. delivered or delivered,failed:No service")
    if len(script) > MAX_LENGTH:
        raise InvalidInput(f"outcome: at most {MAX_LENGTH} characters")
    steps = [_step(part) for part in script.split(",")]
    if len(steps) > MAX_STEPS:
        raise InvalidInput(f"outcome: at most {MAX_STEPS} outcomes")
    return steps


def normal(script: str) -> str:
    """`script` written the one way it is stored (and shown): lower-case words, no spaces."""
    return ",".join(
        f"{o.kind}:{o.reason}" if o.reason and o.reason != DEFAULT_REASON else o.kind.value
        for o in parse(script)
    )
