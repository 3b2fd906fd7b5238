"""The hour or the day of a stored timestamp, as text the same on both engines.

`HourOf(column)` is "YYYY-MM-DD HH" and `DayOf(column)` "YYYY-MM-DD" (UTC, as every
timestamp is stored): SQLite keeps timestamps as "YYYY-MM-DD HH:MM:SS.ffffff" text, so a
prefix of it; PostgreSQL formats its `timestamp` with `to_char`. Grouping by them counts
rows per hour or day.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class _Bucket(FunctionElement[str]):
    type = String()
    inherit_cache = True
    #: The length of the prefix (SQLite) and the format (PostgreSQL).
    length = 0
    pattern = ""


class HourOf(_Bucket):
    name = "hour_of"
    inherit_cache = True
    length = 13
    pattern = "YYYY-MM-DD HH24"


class DayOf(_Bucket):
    name = "day_of"
    inherit_cache = True
    length = 10
    pattern = "YYYY-MM-DD"


@compiles(_Bucket, "sqlite")
def _sqlite(element: _Bucket, compiler: Any, **kw: Any) -> str:
    return f"substr({compiler.process(element.clauses, **kw)}, 1, {element.length})"


@compiles(_Bucket, "postgresql")
def _postgresql(element: _Bucket, compiler: Any, **kw: Any) -> str:
    return f"to_char({compiler.process(element.clauses, **kw)}, '{element.pattern}')"
