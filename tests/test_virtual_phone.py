"""Virtual phones for development: a phone inside smsgw, driven through the same services as
a real phone's requests (claims, state reports, the inbox), with its delay and outcome
script; marked virtual in the API, the CLI and the metrics; refused in production mode."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from smsgw.accounts import service as accounts
from smsgw.cli import app
from smsgw.config import load_settings
from smsgw.db import migrate
from smsgw.db.engine import database_for
from smsgw.devices import service as devices
from smsgw.domain.clock import format_timestamp
from smsgw.domain.errors import InvalidInput
from smsgw.messages import service as messages
from smsgw.messages.service import SendCommand
from smsgw.routing import service as routing
from smsgw.routing.repository import Phone
from smsgw.virtualphones import script
from smsgw.virtualphones import service as virtual
from smsgw.virtualphones.errors import VirtualPhonesOff
from tests.conftest import CLOCK_START, LiveServer, database_rows, make_settings, running
from tests.fakes.receiver import Receiver
from tests.test_cli import environment
from tests.test_metrics import scrape, value
from tests.web_support import Dashboard, alerts_of
from tests.webhook_support import hub_settings

ALLOWED = "SMSGW_MODE=development or SMSGW_VIRTUAL_PHONES=true"


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server in development mode (virtual phones on), webhooks and rounds fast."""
    with running(hub_settings(tmp_path / "data", mode="development")) as live:
        yield live


def cli(server: LiveServer, *args: str, code: int = 0) -> str:
    """Run `smsgw ...` on the server's database, in the server's mode."""
    env = environment(server.settings.data_dir) | {"SMSGW_MODE": server.settings.mode.value}
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def add_virtual(server: LiveServer, login: str, *options: str) -> str:
    said = cli(server, "phones", "add-virtual", "--user", login, *options)
    assert said.startswith("added virtual phone "), said
    return said.split()[-1]


def wait_until(check: Callable[[], bool], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def send(client: httpx.Client, text: str, **extra: Any) -> str:
    body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": text}, **extra}
    response = client.post("/messages", json=body)
    assert response.status_code == 200, response.text
    message_id: str = response.json()["id"]
    return message_id


def message(client: httpx.Client, message_id: str) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"/messages/{message_id}").json()
    return found


def reaches(client: httpx.Client, message_id: str, state: str) -> dict[str, Any]:
    wait_until(lambda: message(client, message_id)["state"] == state)
    return message(client, message_id)


def hook(client: httpx.Client, receiver: Receiver, *events: str) -> None:
    for event in events:
        response = client.post("/webhooks", json={"url": receiver.url, "event": event})
        assert response.status_code == 201, response.text


def events_of(receiver: Receiver, event: str) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.delivered(event)]


def real_phone(server: LiveServer, login: str) -> str:
    async def register() -> str:
        db = database_for(server.settings)
        try:
            user_id = await accounts.user_id_of(db, login)
            return (await devices.register(db, user_id, login, "Pixel", None, None)).device_id
        finally:
            await db.dispose()

    return asyncio.run(register())


def test_a_message_is_taken_at_once_and_delivered_after_the_delay_with_webhooks(
    at: list[datetime], dev_server: LiveServer, receiver: Receiver
) -> None:
    alice = dev_server.create_user("alice")
    client = dev_server.client(alice)
    hook(client, receiver, "sms:sent", "sms:delivered", "sms:failed")
    phone = add_virtual(dev_server, "alice", "--delay", "60")
    first = send(client, "one")
    taken = reaches(client, first, "Processed")
    assert taken["deviceId"] == phone and taken["recipients"][0]["state"] == "Processed"

    at[0] = CLOCK_START + timedelta(seconds=59)
    seen = format_timestamp(at[0])
    wait_until(lambda: client.get("/devices").json()[0]["lastSeen"] == seen)  # a round at +59 s
    second = send(client, "two")
    late = send(client, "three", ttl=30)  # valid until +89 s
    reaches(client, second, "Processed")  # a whole round at +59 s has run since the first
    reaches(client, late, "Processed")
    assert message(client, first)["state"] == "Processed"  # 59 s: not yet
    assert receiver.delivered() == []

    at[0] = CLOCK_START + timedelta(seconds=60)
    done = reaches(client, first, "Delivered")
    [recipient] = done["recipients"]
    assert recipient["state"] == "Delivered" and recipient["error"] is None
    assert set(done["states"]) == {"Pending", "Processed", "Sent", "Delivered"}
    assert done["states"]["Sent"] == format_timestamp(at[0])
    wait_until(lambda: len(receiver.delivered()) == 2)
    for event in ("sms:sent", "sms:delivered"):
        [envelope] = events_of(receiver, event)
        assert envelope["deviceId"] == phone and envelope["payload"]["messageId"] == first
        assert envelope["payload"]["recipient"] == "+12025550100"
    assert message(client, second)["state"] == "Processed"  # taken at +59 s: due at +119 s

    at[0] = CLOCK_START + timedelta(seconds=120)
    reaches(client, second, "Delivered")
    expired = reaches(client, late, "Failed")  # the phone found it past its validUntil
    assert expired["recipients"][0]["error"] == "TTL expired"
    wait_until(lambda: len(events_of(receiver, "sms:failed")) == 1)
    client.close()


def test_the_outcome_script_cycles_and_a_failure_carries_its_reason(
    dev_server: LiveServer, receiver: Receiver
) -> None:
    alice = dev_server.create_user("alice")
    client = dev_server.client(alice)
    hook(client, receiver, "sms:failed")
    add_virtual(
        dev_server, "alice", "--delay", "0", "--outcome", " Delivered, failed:No service ,sent"
    )
    states = []
    for i, final in enumerate(("Delivered", "Failed", "Sent", "Sent")):
        extra = {"withDeliveryReport": False} if i == 3 else {}  # delivered, without a report
        states.append(reaches(client, send(client, f"m{i}", **extra), final))
    assert states[1]["recipients"][0]["error"] == "No service"
    assert "Sent" not in states[1]["states"]  # the radio refused it
    assert "Delivered" not in states[2]["states"] and "Delivered" not in states[3]["states"]
    again = reaches(client, send(client, "m4"), "Failed")  # the script's second, again
    assert again["recipients"][0]["error"] == "No service"
    wait_until(lambda: len(receiver.delivered()) == 2)
    failed = events_of(receiver, "sms:failed")
    assert sorted(e["payload"]["messageId"] for e in failed) == sorted(
        [states[1]["id"], again["id"]]
    )
    assert {e["payload"]["reason"] for e in failed} == {"No service"}
    phones = client.get("/devices").json()
    assert [p["virtual"] for p in phones] == [True]
    client.close()


def test_an_injected_sms_lands_in_the_inbox_and_fires_sms_received(
    dev_server: LiveServer, receiver: Receiver
) -> None:
    alice = dev_server.create_user("alice")
    client = dev_server.client(alice)
    hook(client, receiver, "sms:received")
    phone = add_virtual(dev_server, "alice")
    said = cli(dev_server, "phones", "inject", "--phone", phone, "--from", "+12025550111",
               "--text", "Your code is 1234")  # fmt: skip
    assert said.startswith(f"phone {phone} received SMS ")
    wait_until(lambda: len(receiver.delivered()) == 1)
    [envelope] = events_of(receiver, "sms:received")
    assert envelope["deviceId"] == phone
    assert envelope["payload"]["message"] == "Your code is 1234"
    assert envelope["payload"]["sender"] == "+12025550111"
    response = client.get("/inbox")
    [row] = response.json()
    assert response.headers["X-Total-Count"] == "1"
    assert row["deviceId"] == phone and row["sender"] == "+12025550111"
    assert row["message"] == "Your code is 1234" and row["type"] == "SMS"

    real = real_phone(dev_server, "alice")
    refused = cli(dev_server, "phones", "inject", "--phone", real, "--from", "+1", "--text", "x",
                  code=1)  # fmt: skip
    assert "not a virtual phone" in refused
    assert "device not found" in cli(
        dev_server, "phones", "inject", "--phone", "nope", "--from", "+1", "--text", "x", code=1
    )
    assert "from: required" in cli(
        dev_server, "phones", "inject", "--phone", phone, "--from", " ", "--text", "x", code=1
    )
    client.close()


def test_the_devices_api_and_the_cli_mark_the_virtual_phone(dev_server: LiveServer) -> None:
    alice = dev_server.create_user("alice")
    real = real_phone(dev_server, "alice")
    phone = add_virtual(dev_server, "alice", "--name", "Dev phone")
    with dev_server.client(alice) as client:
        listed = {p["id"]: p for p in client.get("/devices").json()}
    assert listed[phone]["virtual"] is True and listed[phone]["name"] == "Dev phone"
    assert listed[real]["virtual"] is False
    assert listed[phone]["connected"] is False  # no event stream: it lives in the server
    table = cli(dev_server, "phones", "list", "--user", "alice")
    assert "virtual (no real SMS)" in table
    shown = {p["id"]: p["virtual"] for p in json.loads(cli(dev_server, "devices", "list", "--user",
                                                            "alice", "--json"))}  # fmt: skip
    assert shown == {real: False, phone: True}
    assert "delay: seconds from 0 to 86400" in cli(
        dev_server, "phones", "add-virtual", "--user", "alice", "--delay", "-1", code=1
    )
    assert "use delivered, sent, failed or failed:REASON" in cli(
        dev_server, "phones", "add-virtual", "--user", "alice", "--outcome", "bounce", code=1
    )


def test_the_metrics_count_virtual_phones_messages_apart(dev_server: LiveServer) -> None:
    alice, bob = dev_server.create_user("alice"), dev_server.create_user("bob")
    phone = add_virtual(dev_server, "alice", "--delay", "0")
    with dev_server.client(alice) as client, dev_server.client(bob) as other:
        sent = [send(client, f"m{i}") for i in range(2)]
        for message_id in sent:
            reaches(client, message_id, "Delivered")
        send(other, "no phone takes it")
        samples = scrape(dev_server)
        assert value(samples, "smsgw_messages", state="Delivered") == 0
        assert value(samples, "smsgw_messages", state="Pending") == 1
        assert value(samples, "smsgw_virtual_messages", state="Delivered") == 2
        assert value(samples, "smsgw_virtual_messages", state="Pending") == 0
        # Deleting the phone deletes what it "sent": never a real phone's afterwards.
        assert client.delete(f"/devices/{phone}").status_code == 204
        assert client.get("/messages").headers["X-Total-Count"] == "0"
    samples = scrape(dev_server)
    assert value(samples, "smsgw_messages", state="Delivered") == 0
    assert value(samples, "smsgw_virtual_messages", state="Delivered") == 0
    assert value(samples, "smsgw_messages", state="Pending") == 1


def test_two_servers_on_one_database_deliver_each_message_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = hub_settings(tmp_path / "data", mode="development")
    with running(settings) as one, running(settings) as two:
        alice = one.create_user("alice")
        phone = add_virtual(one, "alice", "--delay", "0")
        clients = [one.client(alice), two.client(alice)]
        hook(clients[0], receiver, "sms:delivered")
        sent = [send(clients[i % 2], f"m{i}") for i in range(6)]
        for message_id in sent:
            reaches(clients[0], message_id, "Delivered")
        wait_until(lambda: len(receiver.delivered()) == 6)
        [(drivers,)] = database_rows(settings, "SELECT count(DISTINCT driver) FROM virtual_phones")
        assert drivers == 1
        wait_until(lambda: database_rows(
            settings, "SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'"
        )[0][0] == 0)  # fmt: skip
        delivered = events_of(receiver, "sms:delivered")
        assert sorted(e["payload"]["messageId"] for e in delivered) == sorted(sent)
        assert {e["deviceId"] for e in delivered} == {phone}
        for client in clients:
            client.close()


def test_one_driver_holds_a_phone_until_its_lease_runs_out_or_it_lets_go(
    at: list[datetime], tmp_path: Path
) -> None:
    settings = make_settings(tmp_path / "data", mode="development")
    migrate.upgrade(settings)

    async def scenario() -> None:
        db = database_for(settings)
        try:
            await accounts.create_user(db, "alice", "correct horse battery")
            user_id = await accounts.user_id_of(db, "alice")
            phone = await virtual.add(db, settings, user_id, "alice", delay=1)
            assert [p.device_id for p in await virtual.lease(db, "one", 30)] == [phone]
            assert await virtual.lease(db, "two", 30) == []
            at[0] = CLOCK_START + timedelta(seconds=20)  # renewed: more than half gone
            assert len(await virtual.lease(db, "one", 30)) == 1
            at[0] = CLOCK_START + timedelta(seconds=49)
            assert await virtual.lease(db, "two", 30) == []  # renewed until +50 s
            at[0] = CLOCK_START + timedelta(seconds=51)
            assert len(await virtual.lease(db, "two", 30)) == 1  # one stopped renewing
            assert await virtual.lease(db, "one", 30) == []
            await virtual.release(db, "two")
            assert len(await virtual.lease(db, "one", 30)) == 1  # at once, after a release
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_a_round_takes_cancels_and_plays_out_through_the_phone_services(
    at: list[datetime], tmp_path: Path
) -> None:
    """`drive` alone, no server: a message taken then cancelled is reported Cancelled (as
    the app does with a Cancelling one), the delay runs on the clock, the script moves on."""
    settings = make_settings(tmp_path / "data", mode="development")
    migrate.upgrade(settings)

    async def scenario() -> None:
        db = database_for(settings)
        try:
            await accounts.create_user(db, "alice", "correct horse battery")
            user_id = await accounts.user_id_of(db, "alice")
            phone_id = await virtual.add(db, settings, user_id, "alice", delay=10,
                                         outcome="sent,delivered")  # fmt: skip
            [phone] = await virtual.lease(db, "me", 30)
            as_phone = Phone(phone_id, user_id, None)
            command = SendCommand(["+12025550100"], text="x", device_id=phone_id)
            doomed = (await messages.send(db, None, user_id, command)).id
            await routing.pull(db, as_phone, True, 10)  # taken, not yet reported
            assert (await messages.cancel(db, user_id, doomed)).state == "Cancelling"
            kept = (await messages.send(db, None, user_id, command)).id
            assert (await virtual.drive(db, phone, 10)).next_due == at[0] + timedelta(seconds=10)
            assert (await messages.get(db, user_id, doomed)).state == "Cancelled"
            assert (await messages.get(db, user_id, kept)).state == "Processed"
            at[0] = CLOCK_START + timedelta(seconds=10)
            drove = await virtual.drive(db, phone, 10)
            assert drove.next_due is None and drove.more is False
            assert (await messages.get(db, user_id, kept)).state == "Sent"  # the script's first
            [phone] = await virtual.lease(db, "me", 30)
            assert phone.step == 1
        finally:
            await db.dispose()

    asyncio.run(scenario())


def test_virtual_phones_are_refused_in_production_mode(tmp_path: Path) -> None:
    with running(hub_settings(tmp_path / "data")) as server:
        alice = server.create_user("alice")
        refused = cli(server, "phones", "add-virtual", "--user", "alice", code=1)
        assert "virtual phones are off (this server runs in production mode)" in refused
        assert ALLOWED in refused
        real = real_phone(server, "alice")
        refused = cli(server, "phones", "inject", "--phone", real, "--from", "+1", "--text", "x",
                      code=1)  # fmt: skip
        assert ALLOWED in refused
        dashboard = Dashboard(server)
        dashboard.sign_in(alice)
        page = dashboard.http.get("/dashboard/phones").text
        assert "Add a virtual phone" not in page and 'id="virtual-off"' in page
        answer = dashboard.post("/dashboard/phones/virtual", {"name": "x"}, "/dashboard/phones")
        assert answer.status_code == 403
        [alert] = alerts_of(answer.text)
        assert "virtual phones are off (this server runs in production mode)" in alert
        answer = dashboard.post(
            "/dashboard/phones/virtual/receive",
            {"deviceId": real, "from": "+1", "text": "x"}, "/dashboard/phones",
        )  # fmt: skip
        assert answer.status_code == 403
        dashboard.close()
        with server.client(alice) as client:
            assert [p["virtual"] for p in client.get("/devices").json()] == [False]


def test_the_dashboard_adds_a_virtual_phone_and_gives_it_an_sms(
    dev_server: LiveServer, receiver: Receiver
) -> None:
    alice = dev_server.create_user("alice")
    with dev_server.client(alice) as client:
        hook(client, receiver, "sms:received")
    dashboard = Dashboard(dev_server)
    dashboard.sign_in(alice)
    form = {"name": "Dev phone", "delay": "0", "outcome": "failed:Nope"}
    added = dashboard.post("/dashboard/phones/virtual", form, "/dashboard/phones")
    assert added.status_code == 303 and added.headers["location"].endswith("notice=virtual")
    page = dashboard.http.get("/dashboard/phones").text
    assert "<title>Phones · smsgw</title>" in page  # the forms once leaked into the title
    assert page.count('aria-label="Add a virtual phone"') == 1
    assert '<span class="tag virtual">Virtual</span>' in page
    assert "after 0 s: failed:Nope" in page
    bad = dashboard.post("/dashboard/phones/virtual", {"outcome": "bounce"}, "/dashboard/phones")
    assert bad.status_code == 400
    assert "use delivered, sent, failed or failed:REASON" in alerts_of(bad.text)[0]
    with dev_server.client(alice) as client:
        [phone] = [p["id"] for p in client.get("/devices").json()]
        got = dashboard.post(
            "/dashboard/phones/virtual/receive",
            {"deviceId": phone, "from": "+12025550111", "text": "hello"}, "/dashboard/phones",
        )  # fmt: skip
        assert got.status_code == 303
        wait_until(lambda: len(receiver.delivered()) == 1)
        assert client.get("/inbox").json()[0]["message"] == "hello"
        failed = reaches(client, send(client, "x"), "Failed")
        assert failed["recipients"][0]["error"] == "Nope"
    dashboard.close()


def test_settings_say_when_virtual_phones_are_on(tmp_path: Path) -> None:
    def enabled(**values: object) -> bool:
        return load_settings(data_dir=tmp_path, **values).virtual_phones_enabled

    assert enabled() is False  # production is the default mode
    assert enabled(mode="development") is True
    assert enabled(mode="production", virtual_phones=True) is True
    assert enabled(mode="development", virtual_phones=False) is False
    assert enabled(mode="development", virtual_phones="") is True
    off = VirtualPhonesOff(load_settings(data_dir=tmp_path, virtual_phones=False))
    assert "(SMSGW_VIRTUAL_PHONES=false)" in off.message and ALLOWED in off.message


def test_scripts_are_read_strictly_and_written_one_way() -> None:
    assert script.normal(" Delivered ,FAILED: No service,sent,failed") == (
        "delivered,failed:No service,sent,failed"
    )
    assert script.parse("failed")[0].reason == script.DEFAULT_REASON
    assert script.parse("failed:Error: code 1")[0].reason == "Error: code 1"
    for bad, says in (
        ("", "outcome: required"),
        ("delivered:soon", "only failed takes a reason"),
        ("delivered,,sent", "use delivered, sent, failed"),
        (",".join(["sent"] * 101), "at most 100 outcomes"),
        ("x" * 513, "at most 512 characters"),
    ):
        with pytest.raises(InvalidInput, match=says):
            script.parse(bad)
