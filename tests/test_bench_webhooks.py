"""bench/webhooks runs end to end: a smoke run, checked for completeness, never for speed."""

from __future__ import annotations

import pytest

from tests.conftest import bench_result

pytestmark = pytest.mark.one_engine("no database")  # conftest.py


def test_quick_benchmark_run_delivers_every_event_exactly_once() -> None:
    result = bench_result("bench.webhooks", "--quick")
    assert result["valid"] and not result["problems"]
    phases = result["phases"]
    assert {(p["path"], p["mode"]) for p in phases} == {
        ("baseline", "burst"), ("reports", "burst"), ("posts", "burst"),
        ("reports", "paced"), ("posts", "paced"),
    }  # fmt: skip
    for phase in phases:
        assert phase["delivered"] == phase["events"]
        assert phase["lost"] == phase["duplicates"] == phase["strangers"] == 0
        assert phase["bad_signatures"] == 0
        assert phase["delivered_per_s"] > 0
        # Not held for a phone's own post of the event (SMSGW_WEBHOOKS_PHONE_POST_WAIT_SECONDS,
        # 30 s unless set; the bench sets 0): a reported sms:sent goes at once.
        assert phase["delay_max_ms"] < 20_000
    for path_name in ("reports", "posts"):
        assert result["summary"][path_name]["ratio"] > 0
