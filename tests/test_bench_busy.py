"""bench/busy.py, the benchmarks' busy neighbour: it spins its share of each 10 ms and
sleeps the rest, and refuses a share that is not one."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from bench.busy import spin

from tests.conftest import ROOT

pytestmark = pytest.mark.one_engine("no database")  # conftest.py


def test_it_spins_its_share_and_sleeps_the_rest() -> None:
    """Measured as this thread's CPU, against its own wall time: whatever else the machine
    runs can only take CPU from the spinning, never add to the sleeping."""
    began = time.thread_time()
    spin(0.0, 0.3)
    sleeping = time.thread_time() - began
    began = time.thread_time()
    spin(1.0, 0.5)
    spinning = time.thread_time() - began
    assert sleeping < 0.03 < spinning


def test_a_share_beyond_one_core_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.busy", "1.5"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2 and "between 0 and 1" in done.stderr
