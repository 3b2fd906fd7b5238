"""Message templates: `{{column}}` placeholders (spaces inside the braces allowed) filled
with a row's values by plain substitution. Nothing in a template or a value is evaluated:
a value holding `{{x}}` is sent as it is, not filled again."""

from __future__ import annotations

import re

from smsgw.domain.errors import InvalidInput
from smsgw.messages.schemas import MAX_TEXT

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def placeholders(template: str) -> list[str]:
    """The column names the template names, each once, in order of first use."""
    return list(dict.fromkeys(found.group(1) for found in PLACEHOLDER.finditer(template)))


def check(template: str, columns: list[str]) -> None:
    """InvalidInput, before anything is sent, when the template is empty or too long or
    names a column the file does not have."""
    if not template.strip():
        raise InvalidInput("text: enter the text to send")
    if len(template) > MAX_TEXT:
        raise InvalidInput(f"text: at most {MAX_TEXT} characters")
    names = placeholders(template)
    if "" in names:
        raise InvalidInput("text: an empty placeholder {{}}: put a column name inside")
    unknown = [name for name in names if name not in columns]
    if unknown:
        listed = ", ".join("{{" + name + "}}" for name in unknown)
        known = ", ".join(columns)
        raise InvalidInput(f"text: no such column for {listed} (the file's columns: {known})")


def render(template: str, values: dict[str, str]) -> str:
    """The template with each placeholder replaced by the row's value of that column."""
    return PLACEHOLDER.sub(lambda found: values.get(found.group(1), ""), template)
