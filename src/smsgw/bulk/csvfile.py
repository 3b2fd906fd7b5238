"""Reading an uploaded CSV file: UTF-8 (with or without a byte-order mark), a header row
naming the columns, one of them the phone number; comma, semicolon or tab separated.

Limits: MAX_BYTES and MAX_ROWS (TooLarge, 413). A row with more fields than the header has
names (beyond empty trailing ones) is listed as invalid, never dropped; a row with fewer has
the missing fields empty; a blank row (no field holds anything) carries nothing and is
counted, not sent.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from smsgw.domain.errors import InvalidInput, TooLarge

MAX_BYTES = 2 * 1024 * 1024
MAX_ROWS = 10_000
#: Header names taken as the phone-number column (case, spaces, `_` and `-` aside); the
#: leftmost column so named is the one.
PHONE_COLUMNS = ("phone", "phonenumber", "number", "mobile", "msisdn", "recipient", "to")
SEPARATORS = (",", ";", "\t")


@dataclass(frozen=True)
class Sheet:
    """A read file: its column names, which of them holds the numbers, the data rows with
    their row numbers (the header is row 1, as in a spreadsheet), the rows the file itself
    breaks (row number, reason) and how many blank rows it has."""

    columns: list[str]
    phone_column: str
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    broken: list[tuple[int, str]] = field(default_factory=list)
    blank: int = 0


def _text_of(content: bytes) -> str:
    if len(content) > MAX_BYTES:
        raise TooLarge(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"the file is not UTF-8 text (byte {exc.start + 1}): save it as CSV UTF-8"
        ) from None


def separator_of(first_line: str) -> str:
    """The separator the header row uses most (comma when none)."""
    counts = [(first_line.count(sep), -i, sep) for i, sep in enumerate(SEPARATORS)]
    best = max(counts)
    return best[2] if best[0] else ","


def _key(name: str) -> str:
    return "".join(c for c in name.lower() if c not in " _-")


def _header(names: list[str]) -> tuple[list[str], str]:
    columns = [name.strip() for name in names]
    seen: set[str] = set()
    for name in columns:
        if name and name in seen:
            raise InvalidInput(f"the header names the column {name!r} twice")
        seen.add(name)
    for name in columns:
        if _key(name) in PHONE_COLUMNS:
            return columns, name
    found = ", ".join(repr(n) for n in columns if n) or "none"
    raise InvalidInput(
        "the header row has no phone number column: name one phone, number or mobile "
        f"(columns found: {found})"
    )


def _row(columns: list[str], fields: list[str]) -> dict[str, str] | str:
    """The row's values by column name, or why it is broken."""
    extra = [value for value in fields[len(columns) :] if value.strip()]
    if extra:
        return f"{len(fields)} fields, but the header names {len(columns)} columns"
    values = dict(zip(columns, fields, strict=False))
    return {name: values.get(name, "") for name in columns if name}


def read(content: bytes) -> Sheet:
    """The sheet `content` holds; InvalidInput when it cannot be read as one, TooLarge when
    it is over MAX_BYTES or MAX_ROWS."""
    text = _text_of(content)
    if not text.strip():
        raise InvalidInput("the file is empty: it needs a header row and one row per message")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator_of(text.split("\n")[0]))
    try:
        records = list(reader)
    except csv.Error as exc:
        raise InvalidInput(f"the file is not valid CSV (line {reader.line_num}): {exc}") from None
    columns, phone = _header(records[0])
    rows: list[tuple[int, dict[str, str]]] = []
    broken: list[tuple[int, str]] = []
    blank = 0
    for number, fields in enumerate(records[1:], start=2):
        if not any(value.strip() for value in fields):
            blank += 1
            continue
        if len(rows) + len(broken) >= MAX_ROWS:
            raise TooLarge(f"the file has more than {MAX_ROWS} rows")
        values = _row(columns, fields)
        if isinstance(values, str):
            broken.append((number, values))
        else:
            rows.append((number, values))
    return Sheet([c for c in columns if c], phone, rows, broken, blank)
