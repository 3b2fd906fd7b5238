"""bench/webhooks runs end to end: a smoke run, checked for completeness, never for speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.one_engine("no database")  # conftest.py

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_run_delivers_every_event_exactly_once() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.webhooks", "--quick"],
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
    for path_name in ("reports", "posts"):
        assert result["summary"][path_name]["ratio"] > 0
