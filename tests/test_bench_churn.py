"""bench/churn runs end to end: a smoke run, checked for completeness (every message
accepted is delivered or expired, retention deletes), never for speed or size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.one_engine("SQLite in its own data directory")  # conftest.py

ROOT = Path(__file__).resolve().parents[1]


def test_quick_churn_run_accounts_for_every_message_and_deletes_old_ones() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.churn", "--messages", "600", "--days", "3", "--ticks", "6"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    saved = next(line for line in done.stdout.splitlines() if line.startswith("results: "))
    path = ROOT / saved.split()[1]
    try:
        result = json.loads(path.read_text())
    finally:
        path.unlink()
    assert result["valid"] and not result["problems"]
    days = result["days"]
    assert [d["accepted"] for d in days] == [200, 200, 200]
    assert days[0]["deleted"]["messages"] == 0  # nothing is a day old yet
    assert all(d["deleted"]["messages"] > 0 for d in days[1:])
    assert all(d["file_bytes"] > 0 for d in days)
