"""bench/smpp runs end to end: a smoke run, checked for completeness, never for speed."""

from __future__ import annotations

import pytest

from tests.conftest import bench_result

pytestmark = pytest.mark.one_engine("no database of the tests' own")  # conftest.py


def test_quick_benchmark_run_submits_every_message_once_and_delivers_it() -> None:
    result = bench_result("bench.smpp", "--quick")
    assert result["valid"] and not result["problems"]
    phases = {(p["name"], p["round"]): p for p in result["phases"]}
    assert set(phases) == {("ingest", 1), ("link", 1)}
    link = phases[("link", 1)]
    assert link["messages"] == 200
    assert link["submits_per_s"] > 0 and link["accepted_per_s"] > 0
    assert result["summary"]["round"] == 1
