"""The account settings form: its fields (upstream's whitelist), reading a posted form into
a change, and naming the service's errors per field."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from smsgw.accountsettings.schemas import Document

INT, BOOL, CHOICE, TIME, SECRET = "int", "bool", "choice", "time", "secret"
ERROR = re.compile(r"^(\w+)\.(\w+): (.+)$")


@dataclass(frozen=True)
class Field:
    """One setting on the form; `name` is `section.key`, as the service names it."""

    section: str
    key: str
    label: str
    kind: str
    choices: tuple[str, ...] = ()
    help: str = ""

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def id(self) -> str:
        return f"{self.section}-{self.key}"


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    fields: list[Field]


def _f(section: str, key: str, label: str, kind: str, *choices: str, help: str = "") -> Field:
    return Field(section, key, label, kind, choices, help)


SECTIONS = [
    Section("messages", "Sending messages", [
        _f("messages", "send_interval_min", "Shortest pause between messages (s)", INT),
        _f("messages", "send_interval_max", "Longest pause between messages (s)", INT),
        _f("messages", "limit_period", "Sending limit per", CHOICE,
           "Disabled", "PerMinute", "Per30Minutes", "PerHour", "PerDay"),
        _f("messages", "limit_value", "Messages per limit period", INT),
        _f("messages", "sim_selection_mode", "SIM card choice", CHOICE,
           "OSDefault", "RoundRobin", "Random"),
        _f("messages", "log_lifetime_days", "Keep sent messages on the phone (days)", INT),
        _f("messages", "work_hours_enabled", "Send only within work hours", BOOL),
        _f("messages", "work_hours_start", "Work hours start (HH:mm, 24-hour)", TIME),
        _f("messages", "work_hours_end", "Work hours end (HH:mm, 24-hour)", TIME),
    ]),
    Section("ping", "Ping", [
        _f("ping", "interval_seconds", "Ping the server every (s)", INT),
    ]),
    Section("logs", "Phone logs", [
        _f("logs", "lifetime_days", "Keep the phone's logs (days)", INT),
    ]),
    Section("webhooks", "Webhooks from the phones", [
        _f("webhooks", "internet_required", "Send webhooks only when online", BOOL),
        _f("webhooks", "retry_count", "Webhook retries", INT),
        _f("webhooks", "signing_key", "Signing key", SECRET),
    ]),
    Section("receiver", "Received messages", [
        _f("receiver", "content_provider_enabled",
           "Let other apps on the phone read received messages", BOOL),
    ]),
]  # fmt: skip
FIELDS = {f.name: f for section in SECTIONS for f in section.fields}


@dataclass
class Posted:
    """What a posted form asks to change, the values to show again, and per-field errors."""

    change: Document = field(default_factory=dict)
    shown: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def set(self, item: Field, value: Any) -> None:
        self.change.setdefault(item.section, {})[item.key] = value


def shown_values(document: Document) -> dict[str, Any]:
    """The stored settings as the form shows them, by `section.key` (secrets never)."""
    return {
        name: document.get(item.section, {}).get(item.key)
        for name, item in FIELDS.items()
        if item.kind != SECRET
    }


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _read(item: Field, form: FormData, current: Any, posted: Posted) -> None:
    """Put `item`'s change (if any) into `posted`: only values that differ from the stored
    ones, so a save never rewrites settings nobody touched. Empty means the phone's default."""
    if item.kind == BOOL:
        checked = form.get(item.name) is not None
        posted.shown[item.name] = checked
        if checked != bool(current) and (checked or current is not None):
            posted.set(item, checked)
        return
    text = _text(form, item.name)
    posted.shown[item.name] = text
    value: Any = text or None
    if item.kind == INT and text:
        if not re.fullmatch(r"-?\d{1,12}", text):
            posted.errors[item.name] = "must be a whole number"
            return
        value = int(text)
    if value != current:
        posted.set(item, value)


def _read_secret(item: Field, form: FormData, posted: Posted) -> None:
    new = form.get(item.name)
    if form.get(f"{item.name}.clear") is not None:
        posted.set(item, None)
    elif isinstance(new, str) and new:
        posted.set(item, new)


def read_form(form: FormData, current: Document) -> Posted:
    """The change a posted settings form asks for, against the stored settings `current`."""
    posted = Posted()
    for item in FIELDS.values():
        if item.kind == SECRET:
            _read_secret(item, form, posted)
        else:
            _read(item, form, current.get(item.section, {}).get(item.key), posted)
    return posted


def name_errors(message: str) -> tuple[dict[str, str], list[str]]:
    """The service's InvalidInput message split per field (`section.key: problem`), and the
    parts that name no field of the form."""
    by_field: dict[str, str] = {}
    other: list[str] = []
    for part in message.removeprefix("Invalid settings format: ").split("; "):
        found = ERROR.match(part)
        name = f"{found.group(1)}.{found.group(2)}" if found else ""
        if found and name in FIELDS:
            by_field[name] = found.group(3)
        else:
            other.append(part)
    return by_field, other
