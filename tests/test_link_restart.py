"""A restart with messages in flight on a carrier link (issue 19, requirement 5): `smsgw serve`
as its own process, a link bound to the npm `smpp` simulator (tests/fakes/smsc-sim.js), the
simulator holding the answers of a full window of submit_sm while more parts wait planned;
then the server stopped (SIGTERM), or killed (SIGKILL), and a new server started on the
same database.

What docs/links.md promises, checked at the simulator (submit_sm counted per destination):
nothing is lost and nothing is sent twice. A part submitted and answered keeps its answer
(its receipt, which the carrier keeps for the next bind, makes it Delivered); a part planned
and not submitted is sent by the next server; a part submitted without an answer when the
server died is never sent again, and its recipient fails saying so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from smsgw.cli import app
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.links.runner import intended_ahead
from smsgw.links.service import NO_ANSWER
from tests.clients import TLS
from tests.conftest import (
    API,
    create_account,
    database_environment,
    database_rows,
    free_port,
    make_settings,
)
from tests.fakes.smsc import PASSWORD, USER, Smsc, wait_until
from tests.test_cli import environment

LOGIN, SECRET = "alice", "correct horse battery"
#: Ten recipients, one message each; the third message is two GSM 7-bit parts.
NUMBERS = [f"+120255501{n:02d}" for n in range(10)]
LONG = "Two parts: " + "x" * 180
WINDOW = 3
#: 100 submit_sm a second: the link intends one window ahead of its window
#: (links/runner.py `intended_ahead`: 30 ms of its throughput, at least a window).
THROUGHPUT = 100


class Server:
    """`smsgw serve` as a process group of its own; its log lines kept as they come."""

    def __init__(self, settings: Settings) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        env = os.environ | {
            **database_environment(settings),
            "SMSGW_DATA_DIR": str(settings.data_dir),
            "SMSGW_PORT": self.url.rsplit(":", 1)[1],
            "SMSGW_BOOTSTRAP_ACCOUNT": "false",
            "SMSGW_LOG_LEVEL": "info",
            "SMSGW_LINK_CONNECT_TIMEOUT_SECONDS": "2",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "smsgw", "serve"], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        wait_until(self._ready, within=90, what="smsgw serving")

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def _ready(self) -> bool:
        assert self.process.poll() is None, "".join(self.lines)
        try:
            return (
                httpx.get(self.url + "/health/startup", timeout=10, verify=TLS).status_code == 200
            )
        except httpx.TransportError:
            return False

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url + API, auth=(LOGIN, SECRET), timeout=30, verify=TLS)

    def signal(self, how: signal.Signals) -> None:
        os.killpg(self.process.pid, how)

    def ended(self) -> int:
        """Wait for the process to end; its exit code."""
        code = self.process.wait(timeout=60)
        self.reader.join(timeout=10)
        return code

    def end(self) -> None:
        if self.process.poll() is None:
            self.signal(signal.SIGKILL)
            self.ended()


@contextmanager
def serving(settings: Settings) -> Iterator[Server]:
    server = Server(settings)
    try:
        yield server
    finally:
        server.end()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    made = make_settings(tmp_path / "data")
    migrate.upgrade(made)
    create_account(made, LOGIN, SECRET)
    return made


def add_link(settings: Settings, smsc: Smsc) -> str:
    result = CliRunner().invoke(
        app,
        ["links", "add", "smpp", "--user", LOGIN, "--host", "127.0.0.1",
         "--port", str(smsc.port), "--system-id", USER, "--password-stdin",
         "--source", "SMSGW", "--window", str(WINDOW), "--throughput", str(THROUGHPUT)],
        input=PASSWORD + "\n", env=environment(settings.data_dir),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output.split()[-1]


def queue_messages(server: Server) -> dict[str, str]:
    """One message per number (the third in two parts), queued while no sender is there:
    message id -> number."""
    sent = {}
    with server.client() as api:
        for n, number in enumerate(NUMBERS):
            text = LONG if n == 2 else f"message {n}"
            body = {"phoneNumbers": [number], "textMessage": {"text": text}}
            answer = api.post("/messages", json=body)
            assert answer.status_code == 200, answer.text
            sent[answer.json()["id"]] = number
    return sent


def parts(settings: Settings) -> list[tuple[bool, Any]]:
    """(submitted, outcome) of every part planned on the link."""
    rows = database_rows(settings, "SELECT submitted_at, outcome FROM link_parts ORDER BY id")
    return [(submitted is not None, outcome) for submitted, outcome in rows]


def window_full_and_held(server: Server, settings: Settings, smsc: Smsc) -> None:
    """The link claimed all ten messages (eleven parts planned), submitted a window of
    three, and the simulator holds their answers; the next three parts' intents are
    recorded (intended ahead of the window, as many as it), the last five only planned."""
    wait_until(lambda: smsc.count() == WINDOW, what="a full window at the simulator")
    wait_until(lambda: len(parts(settings)) == len(NUMBERS) + 1, what="every part planned")
    intended = [True] * (2 * WINDOW) + [False] * 5
    wait_until(lambda: [done for done, _ in parts(settings)] == intended,
               what="the window submitted and as many parts intended after it")  # fmt: skip
    assert smsc.count() == WINDOW
    assert all(s["answered"] == "held" for s in smsc.submits())


def states(server: Server, sent: dict[str, str]) -> dict[str, dict[str, Any]]:
    with server.client() as api:
        return {m: api.get(f"/messages/{m}").json() for m in sent}


def settled(server: Server, sent: dict[str, str]) -> dict[str, dict[str, Any]]:
    def final() -> bool:
        return all(s["state"] in ("Delivered", "Failed") for s in states(server, sent).values())

    wait_until(final, within=60, what="every message Delivered or Failed")
    return states(server, sent)


def per_destination(smsc: Smsc) -> Counter[str]:
    return Counter("+" + s["destination"] for s in smsc.submits())


def expected_submits() -> Counter[str]:
    """Every recipient's parts, each once: two for the long message, one for the others."""
    return Counter({number: 2 if n == 2 else 1 for n, number in enumerate(NUMBERS)})


def test_a_server_stopped_with_submits_in_flight_loses_and_repeats_nothing(
    settings: Settings, smsc: Smsc
) -> None:
    """SIGTERM with a window of answers held: the stopping link waits for them (released
    once it is stopping), records them, unbinds; the parts never submitted go out from the
    next server; every recipient ends Delivered, every part submitted once."""
    smsc.hold(True)
    with serving(settings) as first:
        sent = queue_messages(first)
        link_id = add_link(settings, smsc)
        window_full_and_held(first, settings, smsc)

        first.signal(signal.SIGTERM)
        stopping = f"link {link_id}: stopping with {WINDOW} submit_sm awaiting their answer"
        wait_until(lambda: first.said(stopping), what="the link stopping")
        assert smsc.release() == WINDOW
        assert first.ended() in (0, -signal.SIGTERM)  # uvicorn ends by the signal it was sent

    after_stop = parts(settings)
    assert smsc.binds()["unbinds"] == 1
    assert all(outcome in ("accepted", "delivered") for done, outcome in after_stop if done)
    assert not any(outcome for done, outcome in after_stop if not done)
    assert sum(not done for done, _ in after_stop) >= 1  # parts cross the restart unsent

    with serving(settings) as second:
        final = settled(second, sent)
    assert {m: s["state"] for m, s in final.items()} == dict.fromkeys(sent, "Delivered")
    assert all(s["deviceId"] == link_id for s in final.values())
    assert per_destination(smsc) == expected_submits()
    assert [outcome for _, outcome in parts(settings)] == ["delivered"] * (len(NUMBERS) + 1)


def test_a_server_killed_with_submits_in_flight_resends_only_what_never_left(
    settings: Settings, smsc: Smsc
) -> None:
    """SIGKILL with a window of answers held: those three parts may have reached the
    carrier, so the next server fails their recipients saying so and never submits them
    again; so too the three parts intended after them (a killed process cannot tell them
    apart: docs/links.md); the five parts only planned are sent and delivered."""
    smsc.hold(True)
    with serving(settings) as first:
        sent = queue_messages(first)
        add_link(settings, smsc)
        window_full_and_held(first, settings, smsc)
        first.signal(signal.SIGKILL)
        first.ended()

    wait_until(lambda: smsc.binds()["bound"] == 0, what="the simulator seeing the session end")
    smsc.hold(False)
    # The killed process's lease on the link would run out after 30 s (workers/links.py);
    # it has run out here, as if that time had passed.
    database_rows(settings, "UPDATE links SET driver = NULL, lease_until = NULL")

    with serving(settings) as second:
        final = settled(second, sent)
    by_number = {sent[m]: s for m, s in final.items()}
    # The held window (messages 1 and 2, part 1 of message 3) and the parts intended after
    # it (part 2 of message 3, messages 4 and 5).
    in_doubt = NUMBERS[:5]
    for number in NUMBERS:
        [recipient] = by_number[number]["recipients"]
        if number in in_doubt:
            assert (recipient["state"], recipient["error"]) == ("Failed", NO_ANSWER), number
        else:
            assert (recipient["state"], recipient["error"]) == ("Delivered", None), number
    # Those intended never left, and never do: each number's submit_sm, once at most.
    assert per_destination(smsc) == expected_submits() - Counter(
        {NUMBERS[2]: 1, NUMBERS[3]: 1, NUMBERS[4]: 1}
    )
    held = [s for s in smsc.submits() if s["answered"] == "held"]
    assert sorted("+" + s["destination"] for s in held) == NUMBERS[:3]  # submitted together


def test_a_link_intends_30_ms_of_its_throughput_ahead_between_one_and_three_windows() -> None:
    """What a killed process may fail as "not resent" beyond its window (docs/links.md):
    a slow link one window, a fast one up to three."""
    assert intended_ahead(WINDOW, THROUGHPUT) == WINDOW  # this module's link
    assert intended_ahead(10, 100) == 10
    assert intended_ahead(10, 500) == 15
    assert intended_ahead(10, 1000) == 30
    assert intended_ahead(10, 100_000) == 30
    assert intended_ahead(1, 1) == 1
