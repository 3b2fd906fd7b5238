"""The routing rule form of the carrier links page: the modes and what each means, the rule in
words, and reading a posted form into a rule through `rules.checked` (the API's and the
CLI's own check), every refused value named on its field."""

from __future__ import annotations

import re

from smsgw.domain.errors import InvalidInput
from smsgw.routing import rules
from smsgw.routing.rules import Mode, Rule

#: Each mode and its one-line meaning (docs/links.md, "Routing rules").
MODES = (
    ("shared", "Phones and links take every message, whoever claims first (the default)."),
    ("phones", "Phones take every message; links none (with a failover: those still queued "
     "after it)."),
    ("links", "Links take every message; phones none (with a failover: those still queued "
     "after it)."),
    ("prefix", "Links take messages whose recipients all start with one of the prefixes; "
     "phones take the others."),
    ("fallback", "Phones take every message; links too while no phone of yours is online."),
)  # fmt: skip
LABELS = {"mode": "Mode", "prefixes": "Prefixes", "failover_after": "Failover after (seconds)"}
HELP = {
    "prefixes": "Mode prefix only: number prefixes in E.164, separated by commas or spaces, "
    f"such as +44, +4915 (at most {rules.MAX_PREFIXES}).",
    "failover_after": "Optional (empty: never; not in mode shared): a message still queued "
    "this many seconds after it was due may be taken by the other kind of sender too. "
    f"At most {rules.MAX_FAILOVER_SECONDS:,} (a week).",
}
#: `rules.checked` names the wire's fields; the form's own names.
FIELD_OF = {"mode": "mode", "prefixes": "prefixes", "failoverAfter": "failover_after"}
_ITEM = re.compile(r"^prefixes\[(\d+)\]$")
_SEPARATORS = re.compile(r"[\s,]+")


def shown(rule: Rule) -> dict[str, str]:
    """The form's values for a stored rule (no failover: an empty field)."""
    seconds = str(rule.failover_after) if rule.failover_after else ""
    return {
        "mode": rule.mode.value,
        "prefixes": ", ".join(rule.prefixes),
        "failover_after": seconds,
    }


def _seconds(text: str) -> object:
    """The typed failover as `rules.checked` takes it: empty is 0 (never); a whole number
    an int (one too long to read only needs to be out of range); anything else the text
    itself, which it refuses."""
    if not text:
        return 0
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text) if len(text) <= 18 else -1
    return text


def _problem(error: InvalidInput, prefixes: list[str]) -> tuple[str, str]:
    """(form field, message) of `rules.checked`'s error; a bad prefix named by its value."""
    wire, _, message = error.message.partition(": ")
    item = _ITEM.match(wire)
    if item:
        value = prefixes[int(item.group(1))]
        return "prefixes", f"{value if len(value) <= 20 else value[:19] + '…'} {message}"
    return FIELD_OF.get(wire, "mode"), message


def read(typed: dict[str, str]) -> tuple[Rule | None, dict[str, str]]:
    """The rule the typed values (by form field) make, or None and the problems by field.
    Prefixes are used in mode `prefix` only. `rules.checked` names the first bad value; the
    failover and the prefixes are checked alone too, so that every bad field is named."""
    mode, seconds = typed["mode"], _seconds(typed["failover_after"])
    prefixes = [p for p in _SEPARATORS.split(typed["prefixes"]) if p]
    used = prefixes if mode == Mode.PREFIX else []
    errors: dict[str, str] = {}

    def check(*values: object) -> Rule | None:
        try:
            return rules.checked(*values)
        except InvalidInput as error:
            name, message = _problem(error, used)
            errors.setdefault(name, message)
            return None

    rule = check(mode, used, seconds)
    check(Mode.PHONES.value, [], seconds)
    if mode == Mode.PREFIX:
        check(Mode.PREFIX.value, used, 0)
    return (None if errors else rule), errors


def in_words(rule: Rule) -> str:
    """The rule in plain words, as docs/links.md's table says it."""
    after = f"messages still queued {rule.failover_after} s after they were due"
    if rule.mode == Mode.SHARED:
        return (
            "Shared (the default): your phones and your links take every queued message, "
            "whoever claims first."
        )
    if rule.mode == Mode.PREFIX:
        said = (
            "Prefix: your links take the messages whose recipients all start with "
            + _either(rule.prefixes)
            + "; your phones take the others"
        )
        if rule.failover_after:
            said += f"; either kind also takes the other's {after}"
        return said + "."
    first, other = ("phones", "links") if rule.mode != Mode.LINKS else ("links", "phones")
    said = f"{rule.mode.value.capitalize()}: your {first} take every queued message; your {other} "
    if rule.mode == Mode.FALLBACK:
        if rule.failover_after:
            return said + f"take them too while no phone of yours is online, and {after}."
        return said + "take them too, but only while no phone of yours is online."
    return said + (f"take the {after}." if rule.failover_after else "take none.")


def _either(prefixes: tuple[str, ...]) -> str:
    if len(prefixes) == 1:
        return prefixes[0]
    return ", ".join(prefixes[:-1]) + " or " + prefixes[-1]
