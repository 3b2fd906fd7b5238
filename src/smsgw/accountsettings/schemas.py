"""The settings whitelist (upstream §8): every known key, its type, and who may see it.

A document is `{section: {key: value}}`. `validate` checks a request body against the
whitelist and returns what may be stored; each error names its `section.key`.
`DOCUMENT_SCHEMA` is the same whitelist as JSON Schema, for the OpenAPI document.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smsgw.domain.errors import InvalidInput

MAX_INT = 2**31 - 1
MAX_SECRET = 256
HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
#: What a validator returns: None when the value is fine, else what is wrong with it.
Check = Callable[[Any], str | None]


def positive_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be an integer"
    return None if 1 <= value <= MAX_INT else f"must be between 1 and {MAX_INT}"


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def clock_time(value: Any) -> str | None:
    ok = isinstance(value, str) and HHMM.fullmatch(value)
    return None if ok else "must be a time of day as HH:mm (24-hour)"


def secret(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    return None if len(value) <= MAX_SECRET else f"must be at most {MAX_SECRET} characters"


def kept_on_the_phone(value: Any) -> str | None:
    """`encryption.passphrase` may only be cleared through the server, never set: it is the
    key of end-to-end encryption, which the server must not hold."""
    if value == "":
        return None
    return (
        "must not be set through the server: the end-to-end encryption passphrase stays on "
        "your phones and clients (set it in the app, Settings > Encryption), or smsgw could "
        "read every encrypted message"
    )


def text(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def sse_only(value: Any) -> str | None:
    if value == "AUTO":
        return "smsgw reaches phones over Server-Sent Events only: must be SSE_ONLY"
    return one_of("SSE_ONLY")(value)


@dataclass(frozen=True)
class Key:
    """One setting: its check, the JSON Schema saying the same, whether it is stored, and
    whether the API shows it."""

    check: Check
    schema: dict[str, Any]
    writable: bool = True
    readable: bool = True


def choice(*choices: str, writable: bool = True) -> Key:
    return Key(one_of(*choices), {"enum": list(choices)}, writable)


COUNT = Key(positive_int, {"type": "integer", "minimum": 1, "maximum": MAX_INT})
SWITCH = Key(boolean, {"type": "boolean"})
CLOCK = Key(clock_time, {"type": "string", "pattern": HHMM.pattern})
SECRET = Key(secret, {"type": "string", "maxLength": MAX_SECRET, "writeOnly": True}, readable=False)
#: Accepted (type-checked) like upstream, then dropped: not settable through the server.
IGNORED_TEXT = Key(text, {"type": "string"}, writable=False)
#: `encryption.passphrase`: only a reset (null or "") may come through the server.
KEPT_ON_THE_PHONE = Key(
    kept_on_the_phone,
    {"type": "string", "maxLength": 0, "description": 'Only "" or null: set it on the phones.'},
    readable=False,
)

WHITELIST: dict[str, dict[str, Key]] = {
    "encryption": {"passphrase": KEPT_ON_THE_PHONE},
    "messages": {
        "send_interval_min": COUNT,
        "send_interval_max": COUNT,
        "limit_period": choice("Disabled", "PerMinute", "Per30Minutes", "PerHour", "PerDay"),
        "limit_value": COUNT,
        "sim_selection_mode": choice("OSDefault", "RoundRobin", "Random"),
        "log_lifetime_days": COUNT,
        "work_hours_enabled": SWITCH,
        "work_hours_start": CLOCK,
        "work_hours_end": CLOCK,
        "processing_order": choice("LIFO", "FIFO", writable=False),
    },
    "ping": {"interval_seconds": COUNT},
    "logs": {"lifetime_days": COUNT},
    "webhooks": {"internet_required": SWITCH, "retry_count": COUNT, "signing_key": SECRET},
    "gateway": {
        "notification_channel": Key(sse_only, {"enum": ["SSE_ONLY"]}),
        "cloud_url": IGNORED_TEXT,
        "private_token": IGNORED_TEXT,
    },
    "receiver": {"content_provider_enabled": SWITCH},
}


#: What each section is for, as the published schema says it.
SECTIONS: dict[str, str] = {
    "encryption": 'End-to-end encryption: only a reset of the phones\' passphrase (null or "").',
    "messages": "How the phones send: intervals, limits, SIM choice, work hours, log lifetime.",
    "ping": "How often the phones ping (the system:ping webhook).",
    "logs": "How long the phones keep their own logs.",
    "webhooks": "The phones' webhook posts: retries, internet required, signing key.",
    "gateway": "The connection to this server: the notification channel (SSE_ONLY).",
    "receiver": "Received messages: whether other apps on the phone may read them.",
}


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


#: A settings body as JSON Schema: the whitelist, every value and section nullable. The
#: rules across keys (`check_consistent`) apply to the settings as they would be stored.
DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "Sections of settings, each key nullable (null resets it). On the settings as they "
        "would be stored: `messages.send_interval_max` must be at least "
        "`messages.send_interval_min`, and `messages.work_hours_start` and `_end` are "
        "required while `messages.work_hours_enabled` is true."
    ),
    "properties": {
        name: {
            **_or_null(
                {
                    "type": "object",
                    "properties": {key: _or_null(rule.schema) for key, rule in keys.items()},
                    "additionalProperties": False,
                }
            ),
            "description": SECTIONS[name],
        }
        for name, keys in WHITELIST.items()
    },
    "additionalProperties": False,
}

Document = dict[str, dict[str, Any]]


def _check_section(name: str, section: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    keys = WHITELIST[name]
    kept: dict[str, Any] = {}
    for key, value in section.items():
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # `5.0` is the JSON Schema integer 5 (only COUNT takes numbers)
        rule = keys.get(key)
        if rule is None:
            errors.append(f"{name}.{key}: unknown setting")
            continue
        problem = None if value is None else rule.check(value)
        if problem is not None:
            errors.append(f"{name}.{key}: {problem}")
        elif rule.writable:
            kept[key] = None if value == "" and not rule.readable else value
    return kept


def validate(body: Any) -> Document:
    """The storable part of a settings body; InvalidInput naming every wrong `section.key`.

    A `null` section counts as absent; a `null` value is kept (it resets the phone's own
    default). Keys upstream accepts but does not store are checked, then dropped.
    """
    if not isinstance(body, dict):
        raise InvalidInput("Invalid settings format: the body must be a JSON object of sections")
    errors: list[str] = []
    document: Document = {}
    for name, section in body.items():
        if name not in WHITELIST:
            errors.append(f"{name}: unknown settings section")
        elif isinstance(section, dict):
            document[name] = _check_section(name, section, errors)
        elif section is not None:
            errors.append(f"{name}: must be an object")
    if errors:
        raise InvalidInput("Invalid settings format: " + "; ".join(errors))
    return document


def check_consistent(document: Document) -> None:
    """Rules across keys, on the document as it would be stored."""
    messages = document.get("messages", {})
    low, high = messages.get("send_interval_min"), messages.get("send_interval_max")
    errors = []
    if low is not None and high is not None and high < low:
        errors.append("messages.send_interval_max: must be at least messages.send_interval_min")
    if messages.get("work_hours_enabled"):
        for key in ("work_hours_start", "work_hours_end"):
            if messages.get(key) is None:
                errors.append(f"messages.{key}: required when work_hours_enabled is true")
    if errors:
        raise InvalidInput("Invalid settings format: " + "; ".join(errors))


def readable(document: Document) -> Document:
    """What the API may show: secrets are write-only (left out)."""
    shown: Document = {}
    for name, section in document.items():
        keys = WHITELIST.get(name, {})
        shown[name] = {
            key: value for key, value in section.items() if key in keys and keys[key].readable
        }
    return shown
