"""bench/profile.py's table of where a server's time went, from py-spy's collapsed stacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench import profile

pytestmark = pytest.mark.one_engine("no database")  # conftest.py

SERVE = 'process 7:"python -m smsgw serve"'


def test_own_time_and_time_with_callees_are_counted(tmp_path: Path) -> None:
    collapsed = tmp_path / "stacks.txt"
    collapsed.write_text(
        f"{SERVE};send (smsgw/messages/service.py:10);execute (psycopg/cursor.py:5) 3\n"
        f"{SERVE};send (smsgw/messages/service.py:12) 1\n"
    )
    table = profile.top(collapsed)
    assert "4 samples; own time:" in table
    assert "   75.0%  execute (cursor.py)" in table
    assert "  100.0%  send (messages/service.py)" in table


def test_a_frame_name_read_half_written_is_no_line_break(tmp_path: Path) -> None:
    """py-spy sometimes reads a frame's name with a carriage return or a NUL in it: only a
    newline ends a line, and a line without a count is passed over."""
    collapsed = tmp_path / "stacks.txt"
    collapsed.write_bytes(
        f"{SERVE};\r\x00\x1e (Pending);DATETIME.process (sqlalchemy/base.py:1241) 2\n".encode()
        + f"{SERVE};send (smsgw/messages/service.py:10) 2\n".encode()
        + f"{SERVE};cut off\n\n".encode()
    )
    table = profile.top(collapsed)
    assert "4 samples; own time:" in table
    assert "   50.0%  DATETIME.process (base.py)" in table
