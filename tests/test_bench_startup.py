"""bench/startup: one start of each server, measured as the benchmark measures them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bench import startup

pytestmark = pytest.mark.one_engine("no database")  # conftest.py


def test_one_start_of_each_server_is_measured_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(startup, "RESULTS_DIR", tmp_path)
    result = startup.main(["--starts", "1"])
    figures = result["cpu_seconds"]
    assert isinstance(figures, dict)
    assert [len(figures["smsgw"]), len(figures["bare"])] == [1, 1]
    # Each start ran an interpreter and imported a web framework: tenths of a second at
    # least, however fast the machine; smsgw imports and builds more than the bare app.
    assert figures["bare"][0] > 0.05 and figures["smsgw"][0] > figures["bare"][0]
    [saved] = tmp_path.glob("startup-*.json")
    assert json.loads(saved.read_text())["cpu_seconds"] == figures
    assert "smsgw / bare" in capsys.readouterr().out


def test_a_server_that_exits_before_answering_is_reported() -> None:
    with pytest.raises(RuntimeError, match="exited \\(3\\) before answering"):
        startup.start_cpu([sys.executable, "-c", "raise SystemExit(3)"], 9, {})


def test_fewer_than_one_start_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        startup.main(["--starts", "0"])
    assert "--starts is at least 1" in capsys.readouterr().err
