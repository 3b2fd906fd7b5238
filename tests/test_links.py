"""Carrier links (SMPP) through a real running smsgw, against the npm `smpp` simulator
(tests/fakes/smsc-sim.js): a link added by the CLI binds, claims the account's messages as a
phone does, submits them (GSM 7-bit, or UCS-2 in parts behind a UDH), and the carrier's
receipts make them Delivered or Failed in the API and the webhooks; MO messages land in the
inbox; a busy carrier slows the link; a lost connection and a refused bind are survived."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from smsgw.cli import app
from smsgw.db.engine import database_for
from smsgw.domain import clock
from smsgw.links import repository, runner, service
from smsgw.links.runner import RECONNECT_FIRST
from tests.conftest import Account, LiveServer, database_rows, running
from tests.fakes.drop_smsc import DropAfterBind
from tests.fakes.receiver import Receiver
from tests.fakes.smsc import PASSWORD, USER, Smsc, wait_until
from tests.test_cli import environment
from tests.test_metrics import scrape, value
from tests.web_support import Dashboard
from tests.webhook_support import hub_settings

NUMBER = "+12025550100"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """A server whose binds give up after 2 s (the simulator refuses a wrong password with
    no answer smpp34 reports) and webhooks retry fast."""
    with running(hub_settings(tmp_path / "data", link_connect_timeout_seconds=2)) as server:
        yield server


@pytest.fixture
def alice(live: LiveServer) -> Account:
    return live.create_user("alice")


@pytest.fixture
def api(live: LiveServer, alice: Account) -> Iterator[httpx.Client]:
    with live.client(alice) as client:
        yield client


def cli(server: LiveServer, *args: str, stdin: str | None = None, code: int = 0) -> str:
    result = CliRunner().invoke(
        app, list(args), input=stdin, env=environment(server.settings.data_dir)
    )
    assert result.exit_code == code, result.output
    return result.output


def add_link(
    server: LiveServer,
    smsc: Smsc | DropAfterBind,
    login: str,
    *options: str,
    password: str = PASSWORD,
) -> str:
    said = cli(
        server, "links", "add", "smpp", "--user", login, "--host", "127.0.0.1",
        "--port", str(smsc.port), "--system-id", USER, "--password-stdin", "--source", "SMSGW",
        *options, stdin=password + "\n",
    )  # fmt: skip
    assert said.startswith("added SMPP link "), said
    return said.split()[-1]


def listed(server: LiveServer, link_id: str) -> dict[str, Any]:
    links = json.loads(cli(server, "links", "list", "--json"))
    [found] = [link for link in links if link["id"] == link_id]
    return dict(found)


def bound(server: LiveServer, link_id: str) -> None:
    wait_until(lambda: listed(server, link_id)["state"] == "bound", what="the link bound")


def send(api: httpx.Client, text: str, number: str = NUMBER, **extra: Any) -> str:
    body = {"phoneNumbers": [number], "textMessage": {"text": text}, **extra}
    response = api.post("/messages", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def message(api: httpx.Client, message_id: str) -> dict[str, Any]:
    found: dict[str, Any] = api.get(f"/messages/{message_id}").json()
    return found


def reaches(api: httpx.Client, message_id: str, state: str) -> dict[str, Any]:
    wait_until(lambda: message(api, message_id)["state"] == state, what=f"{message_id} {state}")
    return message(api, message_id)


class Rounds:
    """The answer of links/service.py `lease`, which each round of the links' supervisor
    (workers/links.py) asks for: held still on demand (`freeze`), so that the rounds then
    neither start nor stop a runner, as when the next round has not come yet; or with
    leases that ran out a second ago (`lapse`), as a process paused past its lease sees
    them when it resumes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real = service.lease
        self.last: Any = None
        self.mode = "real"
        self.answered = 0  # (in another mode than "real")
        monkeypatch.setattr(service, "lease", self._lease)

    async def _lease(self, *args: Any) -> Any:
        if self.mode == "frozen" and self.last is not None:
            self.answered += 1
            return self.last
        self.last = await self.real(*args)
        if self.mode == "lapsed":
            self.answered += 1
            ago = clock.now() - timedelta(seconds=1)
            return [(link, ago) for link, _ in self.last]
        return self.last

    def _answer(self, mode: str, rounds: int) -> None:
        self.mode, answered = mode, self.answered
        wait_until(lambda: self.answered >= answered + rounds, what=f"{rounds} {mode} round(s)")

    def freeze(self) -> None:
        """Hold the answer still from now on: returns once a round got the held answer (so
        that no round is still asking the database)."""
        self._answer("frozen", 1)

    def lapse(self) -> None:
        """Answer with the leases run out from now on: returns once a whole round took the
        answer (the round after the first got it)."""
        self._answer("lapsed", 2)

    def thaw(self) -> None:
        self.mode = "real"


#: The texts of the parts intended (recorded as submitted, or about to be).
INTENDED = (
    "SELECT m.text FROM link_parts p JOIN messages m ON m.id = p.message_id"
    " WHERE p.submitted_at IS NOT NULL"
)


def a_window_intended_ahead(
    server: LiveServer, api: httpx.Client, smsc: Smsc, login: str
) -> tuple[str, set[str]]:
    """A link of window 2 and 10 submit_sm a second whose SMSC holds its answers, with 20
    messages queued: 2 submitted and awaiting their answer, 2 more intended ahead (the
    most it intends: runner.py `intended_ahead`), the rest planned. The link, and the
    texts of the 4 parts intended."""
    smsc.hold(True)
    for n in range(20):
        send(api, f"message {n}")
    link_id = add_link(server, smsc, login, "--window", "2", "--throughput", "10")
    bound(server, link_id)
    wait_until(lambda: smsc.count() == 2, what="a full window")
    wait_until(lambda: len(database_rows(server.settings, INTENDED)) == 4, what="intended ahead")
    return link_id, {text for (text,) in database_rows(server.settings, INTENDED)}


def hook(api: httpx.Client, receiver: Receiver, *events: str) -> None:
    for event in events:
        response = api.post("/webhooks", json={"url": receiver.url, "event": event})
        assert response.status_code in (200, 201), response.text


def test_a_message_goes_out_through_the_link_and_its_receipt_makes_it_delivered(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc, receiver: Receiver
) -> None:
    hook(api, receiver, "sms:sent", "sms:delivered")
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)

    message_id = send(api, "Hello via SMPP @ 10€")
    done = reaches(api, message_id, "Delivered")

    assert done["deviceId"] == link_id
    assert done["recipients"] == [{"phoneNumber": NUMBER, "state": "Delivered", "error": None}]
    [submit] = smsc.submits()
    assert submit["destination"] == NUMBER.removeprefix("+")
    assert submit["source"] == "SMSGW"
    assert (submit["data_coding"], submit["esm_class"], submit["udh"]) == (0, 0, [])
    assert submit["registered_delivery"] == 1
    wait_until(lambda: len(receiver.delivered()) == 2, what="two webhooks")
    events = {r.json()["event"]: r.json()["payload"] for r in receiver.delivered()}
    assert set(events) == {"sms:sent", "sms:delivered"}
    assert events["sms:delivered"]["messageId"] == message_id
    [part] = database_rows(
        live.settings, "SELECT smsc_id, outcome FROM link_parts WHERE device_id = ?", [link_id]
    )
    assert part == (submit["answered"], "delivered")


def test_the_overview_and_the_phones_page_show_a_link_as_a_carrier_link(
    tmp_path: Path, smsc: Smsc
) -> None:
    """On a server whose phones may have 30 parts a minute, a link is not held to it."""
    with running(hub_settings(tmp_path / "data", phone_parts_per_minute=30)) as server:
        alice = server.create_user("alice")
        link_id = add_link(server, smsc, alice.login)
        bound(server, link_id)
        with server.client(alice) as api:
            reaches(api, send(api, "Hello " * 30), "Delivered")  # two GSM-7 parts
        dashboard = Dashboard(server)
        try:
            dashboard.sign_in(alice)
            overview = dashboard.http.get("/dashboard").text
            phones = dashboard.http.get("/dashboard/phones").text
        finally:
            dashboard.close()
    row = overview.split(f'data-sender-id="{link_id}" data-kind="link"', 1)[1].split("</tr>")[0]
    assert "Carrier link" in row and "Online" in row
    assert f"SMPP 127.0.0.1:{smsc.port}, bound" in row
    assert '<td class="volume">1 / 1</td>' in row
    budget = row.split('<td class="budget">', 1)[1].split("</td>", 1)[0]
    assert re.fullmatch(r"\d this minute<br>\d today", budget), budget  # no "of 30"
    row = phones.split(f'data-device-id="{link_id}"', 1)[1].split("</tr>")[0]
    assert "Carrier link" in row and f"SMPP 127.0.0.1:{smsc.port}, bound" in row
    assert "this minute, no limit" in row and "today (UTC), no limit" in row


def test_a_long_ucs2_text_goes_as_three_parts_behind_one_concatenation_header(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    bound(live, add_link(live, smsc, alice.login))
    text = "Привет, это длинное сообщение! " * 5 + "Конец"  # 160 characters: 3 UCS-2 parts

    message_id = send(api, text)
    reaches(api, message_id, "Delivered")

    # By their sequence numbers: the parts go side by side in the window, in no set order.
    submits = sorted(smsc.submits(), key=lambda s: bytes.fromhex(s["udh"][0])[-1])
    assert len(submits) == 3
    assert {(s["data_coding"], s["esm_class"]) for s in submits} == {(8, 0x40)}
    headers = [bytes.fromhex(s["udh"][0]) for s in submits]
    # IEI 00 (8-bit reference), length 3, one reference, 3 parts, numbered 1 to 3
    assert [h[:2] for h in headers] == [b"\x00\x03"] * 3
    assert len({h[2] for h in headers}) == 1
    assert [(h[3], h[4]) for h in headers] == [(3, 1), (3, 2), (3, 3)]
    assert [len(s["text"]) for s in submits] == [67, 67, 26]
    assert "".join(s["text"] for s in submits) == text


def test_receipts_are_applied_together_the_first_for_a_part_counting(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """links/repository.py `receipted` takes a flush's receipts in chunks (here of 2): an
    accepted part moves once (two receipts for it: the first counts); a part already
    Delivered stays so, and its id, like an id no part has, is left out."""
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)
    reaches(api, send(api, "Привет, это длинное сообщение! " * 5 + "Конец"), "Delivered")
    ids = [row[0] for row in database_rows(
        live.settings, "SELECT smsc_id FROM link_parts ORDER BY id")]  # fmt: skip
    assert len(ids) == 3
    database_rows(live.settings, "UPDATE link_parts SET outcome = 'accepted' WHERE smsc_id = ?",
                  (ids[1],))  # fmt: skip
    monkeypatch.setattr(repository, "CHUNK", 2)

    async def apply() -> dict[str, tuple[int, str]]:
        db = database_for(live.settings)
        try:
            return await db.write_unit(lambda conn: repository.receipted(conn, link_id, [
                (ids[1], repository.UNDELIVERED, "carrier receipt: stat:UNDELIV err:001"),
                (ids[0], repository.UNDELIVERED, "late"), ("NO-SUCH-ID", "delivered", None),
                (ids[1], repository.DELIVERED, None),
            ]))  # fmt: skip
        finally:
            await db.dispose()

    found = asyncio.run(apply())
    [(_, number)] = set(found.values())
    assert sorted(found) == [ids[1]] and number == NUMBER
    outcomes = database_rows(live.settings, "SELECT outcome, error FROM link_parts ORDER BY id")
    assert outcomes == [("delivered", None),
                        ("undelivered", "carrier receipt: stat:UNDELIV err:001"),
                        ("delivered", None)]  # fmt: skip


def receipted(server: LiveServer, link_id: str, smsc_id: str, loose: bool = False) -> list[str]:
    """A DELIVRD receipt for `smsc_id` applied (links/repository.py `receipted`, its id in
    `loose` or not): the ids it matched."""

    async def apply() -> dict[str, tuple[int, str]]:
        db = database_for(server.settings)
        receipts = [(smsc_id, repository.DELIVERED, None)]
        try:
            return await db.write_unit(
                lambda conn: repository.receipted(
                    conn, link_id, receipts, {smsc_id} if loose else set()
                )
            )
        finally:
            await db.dispose()

    return sorted(asyncio.run(apply()))


def test_a_receipt_goes_to_the_part_awaiting_it_when_the_carrier_reuses_ids(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    """A carrier whose counter started again gives a new part the id of an old part whose
    receipt came already: a receipt for that id is the new part's (or an old part's that
    still awaits its own), never the part that has its receipt, even when that is the latest
    with the id. A receipt that comes before the new part's answer is recorded matches
    nothing (the runner tries it again) rather than being spent on the old part."""
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)
    reaches(api, send(api, "Привет, это длинное сообщение! " * 5 + "Конец"), "Delivered")
    keys = [row[0] for row in database_rows(live.settings, "SELECT id FROM link_parts ORDER BY id")]
    assert len(keys) == 3

    def part(key: int, smsc_id: str | None, outcome: str | None) -> None:
        database_rows(live.settings, "UPDATE link_parts SET smsc_id = ?, outcome = ? WHERE id = ?",
                      (smsc_id, outcome, key))  # fmt: skip

    def receipt(smsc_id: str) -> list[str]:
        return receipted(live, link_id, smsc_id)

    def outcomes() -> list[tuple[str | None, str | None]]:
        return database_rows(live.settings, "SELECT smsc_id, outcome FROM link_parts ORDER BY id")

    part(keys[0], "R", "delivered")  # an old part with its receipt
    part(keys[1], None, None)  # a new part, its answer (id R again) not recorded yet
    assert receipt("R") == []
    assert outcomes()[:2] == [("R", "delivered"), (None, None)]

    part(keys[1], "R", "accepted")  # its answer recorded: the receipt, tried again, is its
    assert receipt("R") == ["R"]
    assert outcomes()[:2] == [("R", "delivered"), ("R", "delivered")]

    part(keys[0], "R", "accepted")  # an old part whose receipt comes late, the new one's came
    assert receipt("R") == ["R"]
    assert outcomes()[:2] == [("R", "delivered"), ("R", "delivered")]
    assert receipt("R") == []  # a receipt again: no part awaits one


def test_a_receipt_takes_a_part_by_another_spelling_only_when_no_part_has_its_id(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    """Another spelling of a receipt's id (hex for decimal, here) is tried only for an id
    given as `loose` (the runner: a receipt that waited a second unmatched) that no part
    of the link has as spelled: a second receipt for a part that has its receipt already
    must not take another part whose id reads the same number in another base."""
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)
    reaches(api, send(api, "Привет, это длинное сообщение! " * 5 + "Конец"), "Delivered")
    keys = [row[0] for row in database_rows(live.settings, "SELECT id FROM link_parts ORDER BY id")]
    update = "UPDATE link_parts SET smsc_id = ?, outcome = ? WHERE id = ?"
    database_rows(live.settings, update, ("291", "delivered", keys[0]))
    database_rows(live.settings, update, ("123", "accepted", keys[1]))  # 0x123 is 291

    assert receipted(live, link_id, "291", loose=True) == []  # a part has 291: not 123's
    assert receipted(live, link_id, "0000000123") == []  # not loose: as spelled only
    assert receipted(live, link_id, "0000000123", loose=True) == ["0000000123"]
    outcomes = database_rows(live.settings, "SELECT smsc_id, outcome FROM link_parts ORDER BY id")
    assert outcomes[:2] == [("291", "delivered"), ("123", "delivered")]


def test_an_undeliverable_receipt_fails_the_recipient_with_the_carriers_error(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    bound(live, add_link(live, smsc, alice.login))

    message_id = send(api, "to nowhere", number="+12025550000")
    failed = reaches(api, message_id, "Failed")

    [recipient] = failed["recipients"]
    assert recipient["state"] == "Failed"
    assert recipient["error"] == "carrier receipt: stat:UNDELIV err:001"


def test_an_sms_the_carrier_delivers_lands_in_the_inbox_and_the_webhooks(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc, receiver: Receiver
) -> None:
    hook(api, receiver, "sms:received")
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)

    assert smsc.mo("4915100001", "hello smsgw") == 1

    wait_until(lambda: len(receiver.delivered()) == 1, what="the sms:received webhook")
    [envelope] = [r.json() for r in receiver.delivered()]
    assert envelope["event"] == "sms:received"
    assert envelope["deviceId"] == link_id
    assert envelope["payload"]["message"] == "hello smsgw"
    assert envelope["payload"]["phoneNumber"] == "+4915100001"
    inbox = api.get("/inbox").json()
    assert [(m["message"], m["sender"]) for m in inbox] == [("hello smsgw", "+4915100001")]


def test_a_throttling_carrier_slows_the_link_and_the_message_still_goes(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    bound(live, add_link(live, smsc, alice.login))
    smsc.throttle(3)

    message_id = send(api, "after a while")
    reaches(api, message_id, "Delivered")

    assert [s["answered"] == "throttled" for s in smsc.submits()] == [True, True, True, False]


def test_a_throttled_window_pauses_the_link_once_and_then_everything_goes(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    """A window of 10 answered busy together is one pause of 0.5 s, not ten doublings of it
    (0.5 s became 30 s); during it no submit_sm goes out, not even in the places the busy
    answers freed; then the ten go again with the ten behind them. Queued before the link
    binds, so that its first claim takes them all."""
    smsc.throttle(10)
    sent = [send(api, f"message {n}") for n in range(20)]
    link_id = add_link(live, smsc, alice.login, "--window", "10", "--throughput", "1000")
    bound(live, link_id)

    wait_until(
        lambda: all(message(api, m)["state"] == "Delivered" for m in sent),
        within=90,  # generous for a busy machine: the pause itself is checked below
        what="the 20 messages delivered",
    )

    submits = smsc.submits()
    assert [s["answered"] == "throttled" for s in submits[:10]] == [True] * 10
    accepted = [s for s in submits if s["answered"] != "throttled"]
    assert sorted(s["text"] for s in accepted) == sorted(f"message {n}" for n in range(20))
    assert len(submits) == 30
    # The pause began with the first busy answer, after the first submit_sm (Date.now, ms).
    assert min(s["at"] for s in submits[10:]) - submits[0]["at"] >= 450
    # ...and it was one pause, not ten doublings (those made it 30 s): the window went
    # again within seconds of its busy answers.
    assert min(s["at"] for s in submits[10:]) - submits[9]["at"] < 10_000


def test_a_generic_nack_fails_the_part_and_the_session_goes_on(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    """A carrier that answers a submit_sm with a generic_nack has refused it: the recipient
    fails with the status, nothing is resent, /metrics counts it refused, and the same bind
    sends the next message."""
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)
    smsc.nack(1)

    refused = reaches(api, send(api, "not readable"), "Failed")
    after = reaches(api, send(api, "after it"), "Delivered")

    [recipient] = refused["recipients"]
    assert recipient["error"] == "the SMSC refused submit_sm: ESME_RINVCMDLEN (0x00000002)"
    assert [s["text"] for s in smsc.submits()] == ["not readable", "after it"]
    assert [s["answered"] == "nack" for s in smsc.submits()] == [True, False]
    assert smsc.binds()["ok"] == 1  # no new bind
    assert after["recipients"][0]["state"] == "Delivered"
    samples = scrape(live)
    assert value(samples, "smsgw_link_submitted_total", link=link_id, answer="refused") == 1
    assert value(samples, "smsgw_link_submitted_total", link=link_id, answer="accepted") == 1


def test_a_connection_lost_mid_window_resends_only_what_the_carrier_cannot_have(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    """Window 3: of five messages, three submit_sm go out and wait for answers the carrier
    holds back; the connection drops. Those three may have reached the carrier: they fail
    with an error saying so, never sent twice. The other two go after the link rebinds.
    The five are queued before the link binds, so that its first claim takes them all (a
    link whose window is full claims no more: sent while it waited, they could stay
    Pending until an answer came)."""
    smsc.hold(True)
    sent = [send(api, f"message {n}") for n in range(5)]
    link_id = add_link(live, smsc, alice.login, "--window", "3", "--throughput", "1000")
    bound(live, link_id)
    wait_until(lambda: len(smsc.submits()) == 3, what="a full window")
    wait_until(lambda: all(message(api, m)["state"] == "Processed" for m in sent), what="claimed")
    # The other two are intended ahead of the window (the intent committed, the submit_sm
    # waiting for its place); when the session drops they are taken back, and go.
    submitted = "SELECT count(*) FROM link_parts WHERE submitted_at IS NOT NULL"
    wait_until(lambda: database_rows(live.settings, submitted) == [(5,)], what="intended ahead")
    assert len(smsc.submits()) == 3  # the window holds the rest

    smsc.hold(False)
    assert smsc.drop() == 1
    states = {m: reaches(api, m, "Failed" if n < 3 else "Delivered") for n, m in enumerate(sent)}

    held = [s["text"] for s in smsc.submits() if s["answered"] == "held"]
    assert sorted(held) == ["message 0", "message 1", "message 2"]  # in flight together
    assert len(smsc.submits()) == 5  # nothing sent twice
    for n in range(3):
        [recipient] = states[sent[n]]["recipients"]
        assert "no answer from the SMSC" in recipient["error"]
        assert "not resent" in recipient["error"]
    # It bound again (more than once when a busy machine let a bind outlast the fixture's
    # 2 s connect timeout: the SMSC counts that bind, the link tries again).
    assert smsc.binds()["ok"] >= 2
    bound(live, link_id)


def test_a_refused_bind_is_said_in_the_log_and_the_links_list(
    live: LiveServer, alice: Account, smsc: Smsc, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="smsgw.links")
    link_id = add_link(live, smsc, alice.login, password="wrong")

    seen: dict[str, Any] = {}

    def refused() -> bool:  # an attempt on a busy machine may first time out connecting
        # the state is read once: between two reads the link may be binding again
        seen.update(listed(live, link_id))
        return seen["state"] == "down" and "did not accept the bind" in (seen["detail"] or "")

    wait_until(refused, within=90, what="the refused bind in the list")
    detail = seen["detail"]
    assert "check system_id, password" in detail
    assert smsc.binds()["refused"] >= 1
    said = [r.getMessage() for r in caplog.records if r.name == "smsgw.links"]
    assert any(link_id in line and "did not accept the bind" in line for line in said)
    assert not any("wrong" in line for line in said)  # the password is never logged
    listing = cli(live, "links", "list")
    assert "wrong" not in listing and "secret" not in listing


def test_a_carrier_that_drops_each_bind_at_once_is_bound_again_ever_more_slowly(
    live: LiveServer, alice: Account
) -> None:
    """An SMSC that accepts the bind and closes the connection at once (a limit on binds, a
    policy): each such session counts as a failed attempt, so the pauses between binds
    double from 0.5 s, each at least the lower half of its step: at most six binds in the
    first 10 s. (Before, a successful bind started the backoff again: a bind every 0.25 to
    0.5 s, for ever, which a carrier may punish by blocking the account.) Only lower bounds
    of the pauses are checked: a busy machine only makes them longer."""
    with DropAfterBind() as smsc:
        add_link(live, smsc, alice.login)
        wait_until(lambda: len(smsc.binds()) >= 6, within=90, what="six binds")
        binds = smsc.binds()[:6]

    gaps = [later - earlier for earlier, later in itertools.pairwise(binds)]
    least = [RECONNECT_FIRST * 2**step / 2 for step in range(5)]  # 0.25, 0.5, 1, 2, 4 s
    assert all(gap >= 0.9 * low for gap, low in zip(gaps, least, strict=True)), gaps


def test_the_link_unbinds_when_the_server_stops(tmp_path: Path, smsc: Smsc) -> None:
    with running(hub_settings(tmp_path / "data")) as server:
        owner = server.create_user("owner")
        link_id = add_link(server, smsc, owner.login)
        bound(server, link_id)
    assert smsc.binds()["unbinds"] == 1
    assert smsc.binds()["bound"] == 0


def test_deleting_a_link_unbinds_it_and_removes_it_from_the_list(
    live: LiveServer, alice: Account, smsc: Smsc
) -> None:
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)

    assert cli(live, "links", "delete", link_id, "--yes").strip() == f"deleted link {link_id}"

    wait_until(lambda: smsc.binds()["unbinds"] == 1, what="the unbind")
    assert json.loads(cli(live, "links", "list", "--json")) == []
    cli(live, "links", "delete", link_id, "--yes", code=1)


def test_a_message_pinned_to_a_deleted_link_fails_saying_so(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    """A message pinned to a link (`deviceId`) and still on the server (scheduled) fails when
    the link is deleted, with an error that names a device, not a phone (it said "the phone
    this message was pinned to was deleted")."""
    link_id = add_link(live, smsc, alice.login)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    pinned = send(api, "for the link alone", deviceId=link_id, scheduleAt=later)

    cli(live, "links", "delete", link_id, "--yes")

    failed = message(api, pinned)
    assert failed["state"] == "Failed"
    error = "the device this message was pinned to (deviceId) was deleted"
    assert [r["error"] for r in failed["recipients"]] == [error]
    assert smsc.submits() == []


def test_a_deleted_links_runner_submits_no_part_it_had_not_intended_before(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """docs/links.md: once a link is deleted, its parts not yet submitted are not sent. Its
    runner hears of the deletion only at its supervisor's next round (held back here, as a
    slow round would be); meanwhile its intents take nothing (the parts went with the
    link), so it submits no part but those it had intended before the delete."""
    caplog.set_level(logging.INFO, logger="smsgw.links")
    rounds = Rounds(monkeypatch)
    link_id, intended = a_window_intended_ahead(live, api, smsc, alice.login)
    rounds.freeze()
    cli(live, "links", "delete", link_id, "--yes")

    assert smsc.release() == 2  # the window's answers: places for more

    def dropped() -> bool:
        return any("no longer planned on the link" in r.getMessage() for r in caplog.records)

    wait_until(lambda: dropped() or smsc.count() > 4, what="an intent after the delete")
    rounds.thaw()
    wait_until(lambda: smsc.binds()["unbinds"] == 1, what="the unbind")
    assert {s["text"] for s in smsc.submits()} <= intended
    assert smsc.count() <= 4


# -- what a carrier says that smsgw must not believe (a probe acting as a carrier) ----------


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The lines the links logged."""
    return [r.getMessage() for r in caplog.records if r.name == "smsgw.links"]


def logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in line for line in said(caplog))


def test_once_a_receipt_matched_as_spelled_another_base_is_never_tried(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A carrier that spells its receipts' ids as its answers' (a receipt found its part as
    spelled by an id with a hex letter): a receipt for an id no part has (the part's
    answer was lost, say) is not taken by another part whose id is the same number in the
    other base (decimal 18 is 0x12). It failed that other message, whose own receipt was
    then dropped."""
    caplog.set_level(logging.WARNING, logger="smsgw.links")
    monkeypatch.setattr(runner, "ORPHAN_SECONDS", 3.0)
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)
    smsc.ids("0000001F")
    reaches(api, send(api, "first"), "Delivered")  # its receipt matched as spelled (hex)
    smsc.receipts(on=False)
    smsc.ids("00000012")
    waiting = send(api, "second")
    reaches(api, waiting, "Sent")

    assert smsc.receipt("0000000018", stat="UNDELIV", err="001") == 1
    wait_until(lambda: logged(caplog, "a receipt for '0000000018' named no part awaiting one"),
               what="the stray receipt dropped")  # fmt: skip
    assert message(api, waiting)["state"] == "Sent"
    smsc.receipt("00000012", stat="DELIVRD", err="000")
    reaches(api, waiting, "Delivered")


def test_an_id_longer_than_smpp_allows_is_kept_to_65_characters_and_its_receipt_finds_it(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    """SMPP 3.4's message_id is 65 octets at most; smpp34 takes any. A longer one in an
    answer failed PostgreSQL's column, and the link then recorded no answer at all until a
    restart. Answer and receipt are cut alike, so the receipt still finds its part."""
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)
    long_id = "A" * 40 + "B" * 40
    smsc.ids(long_id)
    first = send(api, "first")
    after = send(api, "second")
    reaches(api, first, "Delivered")
    reaches(api, after, "Delivered")
    ids = database_rows(live.settings, "SELECT smsc_id FROM link_parts ORDER BY id")
    assert ids[0] == (long_id[:65],)


def test_an_answer_the_database_refuses_is_dropped_and_the_others_are_recorded(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """An answer or receipt whose recording fails every time (a value the database cannot
    hold) kept every later answer and receipt of the link out with it, for ever: the
    messages stayed Processed while the carrier delivered them. It is dropped (an error in
    the log), and the others are recorded."""
    caplog.set_level(logging.ERROR, logger="smsgw.links")
    real = service.settle

    async def settle(*args: Any, **kwargs: Any) -> service.Settled:
        if any(outcome[2] == "POISON" for outcome in args[2]):
            raise ValueError("the database refuses this value")
        return await real(*args, **kwargs)

    monkeypatch.setattr(service, "settle", settle)
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)
    smsc.receipts(on=False)  # (the poisoned answer is recorded alone first, and fails)
    smsc.ids("POISON")
    poisoned = send(api, "first")
    wait_until(lambda: logged(caplog, "recording answers failed"), what="the failed recording")
    smsc.receipts(on=True)
    others = [send(api, f"message {n}") for n in range(3)]
    for other in others:
        reaches(api, other, "Delivered")
    wait_until(lambda: logged(caplog, "could not be recorded; dropped"), what="the drop")
    assert message(api, poisoned)["state"] == "Processed"


def test_a_generic_nack_without_an_error_status_fails_the_part(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc
) -> None:
    """A generic_nack is never an acceptance: one with command_status 0 (no reason given)
    was taken for an accepted submit_sm, and the message was Sent for ever."""
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)
    smsc.nack_with(1, status=0)
    failed = reaches(api, send(api, "hello"), "Failed")
    [recipient] = failed["recipients"]
    assert "ESME_RUNKNOWNERR" in recipient["error"]
    assert len(smsc.submits()) == 1  # not sent again


def test_a_receipt_without_a_state_is_ignored_and_the_next_one_counts(
    live: LiveServer, alice: Account, api: httpx.Client, smsc: Smsc,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A receipt that gives no state (no message_state SMPP 3.4 defines, no stat:; an SME's
    acknowledgement, say) failed its message as stat:UNKNOWN, and the carrier's DELIVRD
    that came next was dropped. It is ignored, with a warning."""
    caplog.set_level(logging.WARNING, logger="smsgw.links")
    link_id = add_link(live, smsc, alice.login)
    bound(live, link_id)
    smsc.receipts(on=False)
    smsc.ids("00000ABC")
    sent = send(api, "hello")
    reaches(api, sent, "Sent")
    smsc.receipt("00000ABC", state="9")
    wait_until(lambda: logged(caplog, "a receipt for '00000ABC' gave no final state"),
               what="the receipt ignored")  # fmt: skip
    assert message(api, sent)["state"] == "Sent"
    smsc.receipt("00000ABC", stat="DELIVRD", err="000")
    reaches(api, sent, "Delivered")
