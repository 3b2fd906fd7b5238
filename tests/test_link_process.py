"""`smsgw links run` (workers/links.py `run_alone`, docs/links.md "A process for the
links"): the carrier links in a process of their own beside a real server that runs none
(SMSGW_LINKS=false), against the npm `smpp` simulator. The process takes the link's lease,
binds, sends what the API queued, each part once, with its states and webhooks as the
server would; on SIGTERM it unbinds and gives the lease up."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import database_for
from smsgw.domain import clock
from smsgw.webhooks import service as webhooks
from smsgw.workers import webhooks as webhook_worker
from smsgw.workers.links import run_alone
from smsgw.workers.webhooks import STOPPED
from tests.conftest import ROOT, Account, LiveServer, database_rows
from tests.fakes.receiver import Receiver
from tests.fakes.smsc import Smsc, wait_until
from tests.test_cli import environment
from tests.test_links import NUMBER, add_link, bound, hook, reaches, send
from tests.webhook_support import hub_settings, one_event


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A server that runs no links (its webhooks retry fast): conftest's `server`, `alice`
    and `api` take these settings."""
    return hub_settings(tmp_path / "data", links=False, link_connect_timeout_seconds=2)


@pytest.fixture
def links(server: LiveServer, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m smsgw links run` on the server's database, with its webhook settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
    env |= environment(server.settings.data_dir) | {
        "SMSGW_WEBHOOKS_ALLOW_PRIVATE_URLS": "true",
        "SMSGW_WEBHOOKS_POLL_SECONDS": "0.05",
        "SMSGW_LINK_CONNECT_TIMEOUT_SECONDS": "2",
    }
    with (tmp_path / "links.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "smsgw", "links", "run"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def drivers(server: LiveServer, link_id: str) -> list[object]:
    rows = database_rows(server.settings, "SELECT driver FROM links WHERE device_id = ?", [link_id])
    return [driver for (driver,) in rows]


def test_a_links_process_sends_what_the_api_queued_and_unbinds_on_sigterm(
    server: LiveServer,
    alice: Account,
    api: httpx.Client,
    smsc: Smsc,
    receiver: Receiver,
    links: subprocess.Popen[bytes],
) -> None:
    hook(api, receiver, "sms:sent", "sms:delivered")
    link_id = add_link(server, smsc, alice.login)
    bound(server, link_id)
    assert drivers(server, link_id) != [None]  # leased, and by the links' process alone
    assert smsc.binds()["bound"] == 1

    sent = [send(api, f"through the links' process {n}") for n in range(3)]
    for message_id in sent:
        done = reaches(api, message_id, "Delivered")
        assert done["deviceId"] == link_id
    assert sorted(s["text"] for s in smsc.submits()) == sorted(
        f"through the links' process {n}" for n in range(3)
    )
    wait_until(lambda: len(receiver.delivered()) == 6, what="a sent and a delivered each")
    events = sorted(
        (r.json()["event"], r.json()["payload"]["messageId"]) for r in receiver.delivered()
    )
    assert events == sorted((e, m) for m in sent for e in ("sms:sent", "sms:delivered"))
    assert all(r.json()["payload"]["phoneNumber"] == NUMBER for r in receiver.delivered())

    links.send_signal(signal.SIGTERM)
    assert links.wait(timeout=30) == 0
    assert smsc.binds()["unbinds"] == 1
    assert drivers(server, link_id) == [None]  # the lease given up: another may take it


def test_the_links_process_keeps_the_collector_off_what_start_up_loaded(
    settings: Settings, freezing: None
) -> None:
    """As the server does (app.py): what is alive once the links' process has started is
    frozen, so that a full collection (a pause of tens of milliseconds while a link's
    window waits) does not walk it again and again."""
    migrate.upgrade(settings)

    async def run() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(run_alone(settings, stop))
        deadline = time.monotonic() + 60
        while gc.get_freeze_count() == 0 and not task.done() and time.monotonic() < deadline:  # noqa: ASYNC110 (a count)
            await asyncio.sleep(0.01)
        frozen = gc.get_freeze_count()
        stop.set()
        await task
        return frozen

    assert asyncio.run(run()) > 1000


def links_process_stopped_with_a_request_out(
    tmp_path: Path, answer_after: float
) -> tuple[Settings, dict[str, Any], Receiver]:
    """The links' process delivering a webhook request, to a receiver that answers after
    `answer_after` seconds, when it is told to stop: its settings, the attempt as the log
    then holds it, and the receiver."""
    settings = hub_settings(tmp_path / "data", links=False, webhooks_timeout_seconds=60)
    migrate.upgrade(settings)
    receiver = Receiver(delays=[answer_after]).start()

    async def run() -> dict[str, Any]:
        db = database_for(settings)
        try:
            user_id = await one_event(db, settings, receiver.url)
            stop = asyncio.Event()
            task = asyncio.create_task(run_alone(settings, stop))
            async with asyncio.timeout(60):  # until the request is out
                while not await webhooks.attempts(db, user_id, "in"):  # noqa: ASYNC110 (a row)
                    await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(task, 60)
            [attempt] = await webhooks.attempts(db, user_id, "in")
            return attempt
        finally:
            await db.dispose()

    try:
        return settings, asyncio.run(run()), receiver
    finally:
        receiver.stop()


def test_a_webhook_request_the_links_process_was_making_when_stopped_may_still_be_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The links' process winds its webhook worker down at a stop as the server does: an
    answer that comes within the grace (30 s here, however slow the machine) settles the
    delivery, and nothing is given back."""
    monkeypatch.setattr(webhook_worker, "STOP_GRACE_SECONDS", 30.0)
    _, attempt, receiver = links_process_stopped_with_a_request_out(tmp_path, 1.0)
    assert attempt["status_code"] == 200 and attempt["error"] is None
    assert len(receiver.delivered()) == 1


def test_a_webhook_request_the_links_process_was_making_when_stopped_is_due_again_at_once(
    tmp_path: Path,
) -> None:
    """The links' process delivers webhooks too (its links' events): a request its stop cut
    off is given back, due at once rather than a lease (2 x 60 s + 15 s) later, its attempt
    finished with the reason (workers/webhooks.py `release_leases`)."""
    settings, attempt, _ = links_process_stopped_with_a_request_out(tmp_path, 600)  # hangs
    assert attempt["finished_at"] is not None and attempt["error"] == STOPPED
    [(due,)] = database_rows(settings, "SELECT next_at FROM webhook_deliveries")
    due = due if isinstance(due, datetime) else datetime.fromisoformat(due)
    assert due.replace(tzinfo=UTC) <= clock.now()  # due now: the lease given back
