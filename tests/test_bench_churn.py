"""bench/churn runs end to end: a smoke run, checked for completeness (every message
accepted is delivered or expired, retention deletes), never for speed or size."""

from __future__ import annotations

import pytest

from tests.conftest import bench_result

pytestmark = pytest.mark.one_engine("SQLite in its own data directory")  # conftest.py


def test_quick_churn_run_accounts_for_every_message_and_deletes_old_ones() -> None:
    result = bench_result("bench.churn", "--messages", "600", "--days", "3", "--ticks", "6")
    assert result["valid"] and not result["problems"]
    days = result["days"]
    assert [d["accepted"] for d in days] == [200, 200, 200]
    assert days[0]["deleted"]["messages"] == 0  # nothing is a day old yet
    assert all(d["deleted"]["messages"] > 0 for d in days[1:])
    assert all(d["file_bytes"] > 0 for d in days)
