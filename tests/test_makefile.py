"""`make run` installs what running needs and migrates once; the tests' tools come with
`make test` and `make check` (read from `make -n`, which runs nothing)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.one_engine("no database")  # conftest.py

ROOT = Path(__file__).parent.parent


def planned(target: str, tmp_path: Path) -> str:
    """The commands `make TARGET` would run for a fresh clone (venvs that do not exist)."""
    # Run from `make test`, make would pass its own flags down and print the directories.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", target, f"VENV={tmp_path / 'venv'}",
         f"JASMIN_VENV={tmp_path / 'venv-jasmin'}"], cwd=ROOT,
        capture_output=True, text=True, check=True, timeout=60, env=env,
    )  # fmt: skip
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_installs_the_package_alone_and_migrates_once(tmp_path: Path) -> None:
    run = planned("run", tmp_path)
    assert "-e ." in run and "[dev]" not in run
    assert "db upgrade" not in run  # `serve` creates or migrates the database itself
    assert run.strip().splitlines()[-1].endswith("smsgw serve")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_check_adds_the_development_tools(tmp_path: Path) -> None:
    assert "-e '.[dev]'" in planned("check", tmp_path)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_adds_jasmin_and_its_brokers_for_the_jasmin_test(tmp_path: Path) -> None:
    """tests/test_link_jasmin.py: Jasmin 0.11.0 (0.11.1 loses receipts) in a venv of its
    own, and Debian's Redis and RabbitMQ."""
    plan = planned("test", tmp_path)
    assert f"{tmp_path / 'venv-jasmin'}/bin/python -m pip install" in plan
    assert "jasmin==0.11.0" in plan
    assert "apt-get install -y -q --no-install-recommends redis-server rabbitmq-server" in plan
