"""bench/smpp/units runs a link's units of work over every message it sent, and counts
their instructions with callgrind when valgrind is there: checked for completeness, never
for speed."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from bench.smpp import units

pytestmark = pytest.mark.one_engine("the benchmark makes its own SQLite database")  # conftest.py
ROOT = Path(__file__).resolve().parent.parent


def test_every_message_sent_goes_through_the_units() -> None:
    spent, done = units.measure(30)
    assert done == 30
    assert spent > 0


def test_the_command_prints_the_cpu_a_message() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.smpp.units", "--messages", "20"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "20 messages: " in run.stdout and "ms of CPU a message" in run.stdout


def test_too_few_messages_are_refused() -> None:
    with pytest.raises(SystemExit) as refused:
        units.main(["--messages", "0"])
    assert refused.value.code == 2


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_callgrind_counts_the_loops_instructions() -> None:
    assert units.counted(10) > 10 * 100_000  # a message's units run well over that many


def test_a_what_if_runs_its_statements_first() -> None:
    """--sql: the count trigger dropped, say; a statement that fails stops the run."""
    _, done = units.measure(10, ["DROP TRIGGER message_counts_update"])
    assert done == 10
    with pytest.raises(sqlite3.OperationalError, match="no such trigger"):
        units.measure(10, ["DROP TRIGGER no_such_trigger"])
