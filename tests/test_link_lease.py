"""A link's lease (workers/links.py: one process drives each link; another takes it over
once the lease has run out) and its parts (docs/links.md, "Durability"): a runner whose
lease is another process's submits nothing but what it had intended before, since the
process that took the link over fails those parts as "not resent" or sends them itself."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from smsgw.config import Settings
from tests.conftest import Account, LiveServer, database_rows
from tests.fakes.smsc import Smsc, wait_until
from tests.test_links import Rounds, a_window_intended_ahead
from tests.webhook_support import hub_settings

#: A lease that lasts (links.lease_until), as SQLite's text or PostgreSQL's timestamp.
FAR = datetime(2999, 1, 1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """conftest's `server`, `alice` and `api` take these settings (test_links.py `live`)."""
    return hub_settings(tmp_path / "data", link_connect_timeout_seconds=2)


def take_over(server: LiveServer, link_id: str) -> None:
    """Take the link's lease as another process's round would (links/repository.py
    `lease`), for long."""
    until = (
        FAR if server.settings.database_scheme == "postgresql" else f"{FAR:%Y-%m-%d %H:%M:%S.%f}"
    )
    database_rows(
        server.settings,
        "UPDATE links SET driver = 'another', lease_until = ? WHERE device_id = ?",
        [until, link_id],
    )


def dropped(caplog: pytest.LogCaptureFixture) -> bool:
    return any("no longer planned on the link" in r.getMessage() for r in caplog.records)


def test_a_runner_whose_lease_another_process_took_submits_nothing_it_had_not_intended(
    server: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Another process takes the link over while its runner here holds parts planned;
    until this process's next round hears of it (held back here, as a process paused past
    its lease would be), the runner's intents take nothing: no part goes out but those it
    had intended before."""
    caplog.set_level(logging.INFO, logger="smsgw.links")
    rounds = Rounds(monkeypatch)
    link_id, intended = a_window_intended_ahead(server, api, smsc, alice.login)
    rounds.freeze()
    take_over(server, link_id)

    assert smsc.release() == 2  # the window's answers: places for more

    wait_until(lambda: dropped(caplog) or smsc.count() > 4, what="an intent after the takeover")
    rounds.thaw()  # the round hears the link is another's, and stops its runner
    wait_until(lambda: smsc.binds()["unbinds"] == 1, what="the unbind")
    assert {s["text"] for s in smsc.submits()} <= intended
    assert smsc.count() <= 4
    assert database_rows(server.settings, "SELECT driver FROM links") == [("another",)]


def test_a_runner_whose_lease_ran_out_by_its_clock_submits_nothing_until_it_is_renewed(
    server: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A process paused past its lease finds, when it resumes, that the lease its last round
    renewed has run out by its clock (here: its round says so, for the link's runner to
    see first): another process may have taken the link over and failed the parts intended
    here as "not resent". So the runner submits none of them until a round renews the
    lease; then they go, each once."""
    caplog.set_level(logging.WARNING, logger="smsgw.links")
    rounds = Rounds(monkeypatch)
    a_window_intended_ahead(server, api, smsc, alice.login)
    rounds.lapse()

    assert smsc.release() == 2  # the window's answers: places for the 2 parts intended

    def held_back() -> bool:
        return any("no submit_sm until it is" in r.getMessage() for r in caplog.records)

    wait_until(lambda: held_back() or smsc.count() > 2, what="the runner held back")
    assert smsc.count() == 2
    rounds.thaw()  # the next round's renewal: the parts intended go, then the rest
    wait_until(lambda: smsc.count() == 20, what="every message submitted")
    assert sorted(s["text"] for s in smsc.submits()) == sorted(f"message {n}" for n in range(20))
