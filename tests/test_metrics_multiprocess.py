"""/metrics with several server processes (PROMETHEUS_MULTIPROC_DIR): any process answers
the scrape with the counts of all, and the state gauges once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from smsgw import metrics
from smsgw.app import create_app
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import database_for
from smsgw.events.hub import EventHub
from tests.clients import TLS
from tests.conftest import LiveServer, database_environment, free_port, make_settings
from tests.test_metrics import Samples, requests, scrape, value

API = "/api/3rdparty/v1"
LIVE = "/health/live"
STATE_GAUGES = (
    "smsgw_messages",
    "smsgw_messages_claimed",
    "smsgw_phones_connected",
    "smsgw_event_streams",
    "smsgw_webhook_outbox_depth",
)


@contextmanager
def serving(data_dir: Path, shared: Path) -> Iterator[tuple[LiveServer, int]]:
    """`smsgw serve` as its own process, with the metrics directory in its environment."""
    port = free_port()
    settings = make_settings(data_dir)
    env = os.environ | {
        **database_environment(settings),
        "SMSGW_DATA_DIR": str(data_dir),
        "SMSGW_PORT": str(port),
        "SMSGW_BOOTSTRAP_ACCOUNT": "false",
        metrics.MULTIPROC_DIR: str(shared),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "smsgw", "serve"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    live = LiveServer(f"http://127.0.0.1:{port}", settings)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(live.url + "/health/startup", verify=TLS).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "smsgw did not start"
            time.sleep(0.1)
        yield live, process.pid
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)


def families(server: LiveServer) -> list[str]:
    """The metric families of a scrape, in order (a family listed twice shows twice)."""
    text = httpx.get(server.url + "/metrics", timeout=20, verify=TLS).text
    return [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]


def local_exposition(settings: Settings) -> Samples:
    """What /metrics answers, built here by the function the endpoint uses."""

    async def build() -> bytes:
        db = database_for(settings)
        try:
            return await metrics.exposition(db, EventHub())
        finally:
            await db.dispose()

    samples: Samples = {}
    for family in text_string_to_metric_families(asyncio.run(build()).decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def test_any_process_answers_the_scrape_with_the_counts_of_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, shared = tmp_path / "data", tmp_path / "metrics"
    shared.mkdir()
    with serving(data, shared) as (first, first_pid), serving(data, shared) as (second, pid):
        account = first.create_user("alice")
        for _ in range(3):
            assert httpx.get(first.url + LIVE, verify=TLS).status_code == 200
        for _ in range(2):
            assert httpx.get(second.url + LIVE, verify=TLS).status_code == 200
        with second.client(account) as api:
            body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "hello"}}
            assert api.post("/messages", json=body).status_code == 200
        for server in (first, second):
            samples = scrape(server)
            assert requests(samples, "GET", LIVE, "200") == 5
            count = "smsgw_http_request_duration_seconds_count"
            assert value(samples, count, method="GET", route=LIVE) == 5
            assert value(samples, "smsgw_http_request_duration_seconds_bucket",
                          method="GET", route=LIVE, le="+Inf") == 5  # fmt: skip
            assert requests(samples, "POST", API + "/messages", "200") == 1
            assert value(samples, "smsgw_messages", state="Pending") == 1
            listed = families(server)
            assert all(listed.count(name) == 1 for name in STATE_GAUGES), listed
    metrics.process_exited(first_pid, str(shared))
    metrics.process_exited(pid, str(shared))
    # Once both have exited, the totals stay (here, where nothing was counted).
    monkeypatch.setenv(metrics.MULTIPROC_DIR, str(shared))
    samples = local_exposition(make_settings(data))
    assert requests(samples, "GET", LIVE, "200") == 5
    assert requests(samples, "POST", API + "/messages", "200") == 1


COUNT_DELIVERIES = """
import sys
from smsgw import metrics
for _ in range(int(sys.argv[1])):
    metrics.webhook_delivery("sms:sent", True)
metrics.webhook_delivery("sms:sent", False)
"""


def test_webhook_deliveries_of_every_process_are_summed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = os.environ | {metrics.MULTIPROC_DIR: str(shared)}
    for count in (2, 5):
        subprocess.run([sys.executable, "-c", COUNT_DELIVERIES, str(count)], env=env, check=True)
    settings = make_settings(tmp_path / "data")
    migrate.upgrade(settings)
    monkeypatch.setenv(metrics.MULTIPROC_DIR, str(shared))
    samples = local_exposition(settings)
    deliveries = "smsgw_webhook_deliveries_total"
    assert value(samples, deliveries, event="sms:sent", outcome="delivered") == 7
    assert value(samples, deliveries, event="sms:sent", outcome="failed") == 2
    assert value(samples, "smsgw_webhook_outbox_depth") == 0


def test_without_the_variable_counts_stay_in_the_process(tmp_path: Path) -> None:
    assert metrics.multiprocess_dir() is None
    settings = make_settings(tmp_path / "data")
    migrate.upgrade(settings)
    deliveries = "smsgw_webhook_deliveries_total"
    labels = {"event": "sms:test-local", "outcome": "delivered"}
    before = value(local_exposition(settings), deliveries, **labels)
    metrics.webhook_delivery("sms:test-local", True)
    assert value(local_exposition(settings), deliveries, **labels) == before + 1
    metrics.process_exited(os.getpid())  # nothing to do, and no error


def test_a_process_that_imported_the_metrics_before_the_variable_refuses_to_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "data")
    monkeypatch.setenv(metrics.MULTIPROC_DIR, str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match="not a directory"):
        create_app(settings)
    monkeypatch.setenv(metrics.MULTIPROC_DIR, str(tmp_path))
    with pytest.raises(RuntimeError, match="set after prometheus_client was imported"):
        create_app(settings)
