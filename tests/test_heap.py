"""What a server's start-up loaded is frozen out of the collector's walks (heap.py); the test
process itself keeps the freeze off (conftest.py), and a test that turns it on releases it."""

from __future__ import annotations

import gc

import httpx
import pytest

from smsgw import heap
from smsgw.config import Settings
from tests.clients import TLS
from tests.conftest import running

pytestmark = pytest.mark.one_engine("the process's heap, not the database")


def test_a_server_freezes_what_its_start_up_loaded(settings: Settings, freezing: None) -> None:
    assert gc.get_freeze_count() == 0
    with running(settings) as live:
        assert httpx.get(live.url + "/health/live", verify=TLS).status_code == 200
        assert gc.get_freeze_count() > 1000


def test_in_the_test_process_a_start_freezes_nothing(settings: Settings) -> None:
    assert heap.FREEZE_AT_START is False
    with running(settings) as live:
        assert httpx.get(live.url + "/health/live", verify=TLS).status_code == 200
        assert gc.get_freeze_count() == 0
