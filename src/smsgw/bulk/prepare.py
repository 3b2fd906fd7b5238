"""From a CSV file and a template to the messages of a bulk send: each row rendered and
checked as `POST /messages` checks a message (its number and its text), the rows that fail
listed with their row number and reason. Used by the dashboard, the CLI and their tests."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from smsgw.bulk import csvfile, template
from smsgw.domain.errors import InvalidInput
from smsgw.domain.phones import normalize_all
from smsgw.messages.parts import count_parts
from smsgw.messages.schemas import SendMessageRequest


@dataclass(frozen=True)
class Row:
    """A message to send: its row in the file, its number (E.164), text and parts."""

    row: int
    phone: str
    text: str
    parts: int


@dataclass(frozen=True)
class Invalid:
    """A row that will not be sent: its row number, its number as written, and why."""

    row: int
    phone: str
    reason: str


@dataclass(frozen=True)
class Prepared:
    columns: list[str]
    phone_column: str
    rows: list[Row]
    invalid: list[Invalid]
    blank: int

    @property
    def parts(self) -> int:
        return sum(row.parts for row in self.rows)


def _reason(error: ValidationError) -> str:
    first = error.errors()[0]
    where = "phone" if first["loc"] and first["loc"][0] == "phoneNumbers" else "text"
    return f"{where}: {first['msg'].removeprefix('Value error, ')}"


def check_row(number: int, phone: str, text: str, region: str | None) -> Row | Invalid:
    """One row checked as `POST /messages` checks a message to `phone` with `text`."""
    if not phone:
        return Invalid(number, phone, "phone: the row has no phone number")
    if not text.strip():
        return Invalid(number, phone, "text: empty once the placeholders are filled")
    try:
        SendMessageRequest.model_validate({"phoneNumbers": [phone], "textMessage": {"text": text}})
        (normalized,) = normalize_all([phone], region, True)
    except ValidationError as error:
        return Invalid(number, phone, _reason(error))
    except InvalidInput as error:
        return Invalid(number, phone, "phone: " + error.message.removeprefix("phoneNumbers[0]: "))
    return Row(number, normalized, text, count_parts(text))


def prepare(content: bytes, text: str, region: str | None) -> Prepared:
    """The file's rows rendered with `text` and checked; InvalidInput (or TooLarge) when the
    file or the template cannot be used at all, before anything is sent."""
    sheet = csvfile.read(content)
    template.check(text, sheet.columns)
    rows: list[Row] = []
    invalid = [Invalid(number, "", reason) for number, reason in sheet.broken]
    for number, values in sheet.rows:
        phone = values[sheet.phone_column].strip()
        checked = check_row(number, phone, template.render(text, values), region)
        if isinstance(checked, Row):
            rows.append(checked)
        else:
            invalid.append(checked)
    invalid.sort(key=lambda item: item.row)
    return Prepared(sheet.columns, sheet.phone_column, rows, invalid, sheet.blank)
