"""bench/data runs end to end on a small database: a smoke run, checked for completeness
(the build came out as planned and the server read every row it made), never for speed."""

from __future__ import annotations

import pytest

from tests.conftest import bench_result

pytestmark = pytest.mark.one_engine("the benchmark chooses its engine itself")  # conftest.py


def test_small_benchmark_run_builds_as_planned_and_answers_every_request() -> None:
    result = bench_result(
        "bench.data", "--engines", "sqlite", "--messages", "1000",
        "--small-accounts", "3", "--small-messages", "10", "--requests", "10",
        "--reference-requests", "10",
    )  # fmt: skip
    assert result["valid"] and not result["problems"]
    run = result["engines"]["sqlite"]
    built = run["built"]
    assert built["by_state"] == {"Cancelled": 30, "Delivered": 800, "Failed": 70, "Pending": 100}
    assert built["messages"] == built["recipients"] == 1030
    kinds = {t["kind"]: t["count"] for t in run["timings"]}
    assert set(kinds) == {
        "first_page", "cursor_page_20", "cursor_page_100", "get_by_id", "state_pending",
        "skip_deep", "pull", "post", "post_empty",
    }  # fmt: skip
    assert all(count >= 10 for count in kinds.values())
    assert run["pulled"] == 100  # each pull claimed a phone's cap (10)
