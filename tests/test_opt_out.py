"""Opt-outs: a recipient's STOP (received by a simulated phone) lists its number for the
phone's owner; a later message to it is accepted, that recipient fails with "recipient opted
out", no phone ever gets it, and sms:failed reaches the webhooks; START takes it off; the
API adds and removes numbers; accounts are apart; numbers match however they are written."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsgw.domain.keywords import Keywords, parse_extra
from tests.conftest import LiveServer, database_rows, running
from tests.fakes.phone import SimulatedPhone
from tests.fakes.receiver import Receiver
from tests.webhook_support import Api, eventually, hub_settings, phone, run, started, until

OPTED_OUT = "recipient opted out"
STOPPER = "+12025550111"
OTHER = "+12025550100"
#: What a hub-mode phone of the simulated app version is told to post: the received kinds,
#: and its pings (its health, for the overview).
HUB_HOOKS = 5


@pytest.fixture
def hub_server(tmp_path: Path) -> Iterator[LiveServer]:
    with running(hub_settings(tmp_path / "data", default_region="US")) as live:
        yield live


async def listed(api: Api) -> list[dict[str, Any]]:
    response = await api.client.get("/opt-outs")
    assert response.status_code == 200, response.text
    assert int(response.headers["X-Total-Count"]) == len(response.json())
    result: list[dict[str, Any]] = response.json()
    return result


async def send(api: Api, numbers: list[str], **query: str) -> dict[str, Any]:
    body = {"phoneNumbers": numbers, "textMessage": {"text": "offer"}}
    response = await api.client.post("/messages", json=body, params=query)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def message(api: Api, message_id: str) -> dict[str, Any]:
    result: dict[str, Any] = (await api.client.get(f"/messages/{message_id}")).json()
    return result


async def opted_out_by_sms(api: Api, device: SimulatedPhone, sender: str, text: str) -> None:
    device.receive_sms(sender, text)

    async def on_the_list() -> bool:
        return any(entry["phoneNumber"] == STOPPER for entry in await listed(api))

    await until(on_the_list)


def handed_numbers(device: SimulatedPhone) -> set[str]:
    return {number for local in device.messages.values() for number in local.numbers}


def test_a_stop_lists_the_sender_and_a_message_to_it_fails_without_reaching_a_phone(
    hub_server: LiveServer, receiver: Receiver
) -> None:
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        await api.hook(receiver.url, "sms:failed")
        device = await started(phone(hub_server, owner), webhooks=HUB_HOOKS + 1)
        await opted_out_by_sms(api, device, STOPPER, "STOP")
        [entry] = await listed(api)
        assert entry["source"] == "sms" and entry["createdAt"].endswith("Z")
        refused = await send(api, [STOPPER])
        assert refused["state"] == "Failed"
        assert refused["recipients"] == [
            {"phoneNumber": STOPPER, "state": "Failed", "error": OPTED_OUT}
        ]
        assert set(refused["states"]) == {"Pending", "Failed"}
        await eventually(lambda: len(receiver.delivered("sms:failed")) == 1)
        payload = receiver.delivered("sms:failed")[0].json()["payload"]
        assert payload["messageId"] == refused["id"] and payload["recipient"] == STOPPER
        assert payload["reason"] == OPTED_OUT and payload["failedAt"].endswith("Z")
        # A message sent after it is delivered: the phone pulled, and never got the other.
        sent = await send(api, [OTHER])

        async def delivered() -> bool:
            return (await message(api, sent["id"]))["state"] == "Delivered"

        await until(delivered)
        assert refused["id"] not in device.messages and STOPPER not in handed_numbers(device)
        assert (await message(api, refused["id"]))["state"] == "Failed"
        log = (await api.client.get("/logs")).json()
        assert any(OPTED_OUT in entry["message"] for entry in log)
        await device.stop()
        await api.close()

    run(scenario)


def test_the_other_recipients_of_a_message_are_sent_to(
    hub_server: LiveServer, receiver: Receiver
) -> None:
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        await api.hook(receiver.url, "sms:failed")
        device = await started(phone(hub_server, owner), webhooks=HUB_HOOKS + 1)
        await opted_out_by_sms(api, device, STOPPER, " stop. ")
        accepted = await send(api, [OTHER, STOPPER])
        assert accepted["state"] == "Pending"
        assert [(r["state"], r["error"]) for r in accepted["recipients"]] == [
            ("Pending", None),
            ("Failed", OPTED_OUT),
        ]

        async def done() -> bool:
            return (await message(api, accepted["id"]))["state"] != "Pending"

        await until(done)
        await eventually(lambda: accepted["id"] in device.messages)
        assert device.messages[accepted["id"]].numbers == [OTHER]

        async def other_delivered() -> bool:
            found = await message(api, accepted["id"])
            return found["recipients"][0]["state"] == "Delivered"

        await until(other_delivered)
        final = await message(api, accepted["id"])
        assert final["state"] == "Sent"  # Delivered and Failed: the documented mix
        assert final["recipients"][1] == {
            "phoneNumber": STOPPER,
            "state": "Failed",
            "error": OPTED_OUT,
        }
        await eventually(lambda: len(receiver.delivered("sms:failed")) == 1)
        assert receiver.delivered("sms:failed")[0].json()["payload"]["recipient"] == STOPPER
        await device.stop()
        await api.close()

    run(scenario)


def test_start_takes_the_number_off_and_messages_go_out_again(hub_server: LiveServer) -> None:
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        device = await started(phone(hub_server, owner), webhooks=HUB_HOOKS)
        await opted_out_by_sms(api, device, STOPPER, "Unsubscribe")
        device.receive_sms(STOPPER, "please stop sending")  # not a stop word: nothing changes
        device.receive_sms(STOPPER, "Start!")

        async def emptied() -> bool:
            return await listed(api) == []

        await until(emptied)

        async def all_in_the_inbox() -> bool:  # every one of them, as any SMS
            return (await api.inbox())[1] == 3

        await until(all_in_the_inbox)
        assert await listed(api) == []  # "please stop sending" changed nothing
        accepted = await send(api, [STOPPER])
        assert accepted["state"] == "Pending" and accepted["recipients"][0]["error"] is None

        async def delivered() -> bool:
            return (await message(api, accepted["id"]))["state"] == "Delivered"

        await until(delivered)
        assert device.messages[accepted["id"]].numbers == [STOPPER]
        await device.stop()
        await api.close()

    run(scenario)


def test_a_stop_received_by_one_accounts_phone_does_not_list_it_for_another(
    hub_server: LiveServer,
) -> None:
    alice, bob = hub_server.create_user("alice"), hub_server.create_user("bob")

    async def scenario() -> None:
        alices, bobs = Api(hub_server, alice), Api(hub_server, bob)
        device = await started(phone(hub_server, bob), webhooks=HUB_HOOKS)
        await opted_out_by_sms(bobs, device, STOPPER, "QUIT")
        assert await listed(alices) == []
        accepted = await send(alices, [STOPPER])
        assert accepted["state"] == "Pending" and accepted["recipients"][0]["error"] is None
        assert (await send(bobs, [STOPPER]))["state"] == "Failed"
        # Bob's hand-made entries do not touch Alice's either, nor can Alice remove them.
        assert (await bobs.client.post("/opt-outs", json={"phoneNumber": OTHER})).status_code == 201
        assert (await send(alices, [OTHER]))["state"] == "Pending"
        assert (await alices.client.delete(f"/opt-outs/{OTHER}")).status_code == 404
        assert len(await listed(bobs)) == 2
        await device.stop()
        await alices.close()
        await bobs.close()

    run(scenario)


# --- The API ---------------------------------------------------------------------------


@pytest.fixture
def region_server(tmp_path: Path) -> Iterator[LiveServer]:
    with running(hub_settings(tmp_path / "data", default_region="US")) as live:
        yield live


@pytest.fixture
def owner_api(region_server: LiveServer) -> Iterator[httpx.Client]:
    with region_server.client(region_server.create_user("owner")) as client:
        yield client


def test_numbers_are_added_listed_paged_and_removed(owner_api: httpx.Client) -> None:
    added = owner_api.post("/opt-outs", json={"phoneNumber": "+1 202 555 0100"})
    assert added.status_code == 201, added.text
    assert added.json()["phoneNumber"] == OTHER and added.json()["source"] == "api"
    again = owner_api.post("/opt-outs", json={"phoneNumber": "(202) 555-0100"})
    assert again.status_code == 200 and again.json() == added.json()
    for n in range(3):
        owner_api.post("/opt-outs", json={"phoneNumber": f"+1202555012{n}"})
    page = owner_api.get("/opt-outs", params={"limit": 2, "offset": 1})
    assert page.status_code == 200 and page.headers["X-Total-Count"] == "4"
    assert [e["phoneNumber"] for e in page.json()] == ["+12025550121", "+12025550120"]
    assert owner_api.get("/opt-outs", params={"limit": 500}).headers["X-Limit"] == "100"
    assert owner_api.delete("/opt-outs/%2B12025550100").status_code == 204
    missing = owner_api.delete("/opt-outs/%2B12025550100")
    assert missing.status_code == 404
    assert missing.json() == {"message": "phone number not on the opt-out list"}
    assert owner_api.delete("/opt-outs/2025550120").status_code == 204  # region US
    # The alias of the hosted layout serves the same list.
    alias = owner_api.get(
        str(owner_api.base_url).replace("/api/3rdparty", "/3rdparty").rstrip("/") + "/opt-outs"
    )
    assert [e["phoneNumber"] for e in alias.json()] == ["+12025550122", "+12025550121"]
    past = owner_api.get("/opt-outs", params={"offset": 10})
    assert past.json() == [] and past.headers["X-Total-Count"] == "2"


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"phoneNumber": "not a number"}, "phoneNumber: 'not a number' is not a phone number"),
        ({"phoneNumber": "+1 202 555 01"}, "phoneNumber: '+1 202 555 01' is not a valid phone"),
        ({"phoneNumber": ""}, "phoneNumber"),
        ({}, "phoneNumber"),
    ],
)
def test_a_number_the_send_path_would_refuse_is_refused_with_400(
    owner_api: httpx.Client, body: dict[str, str], said: str
) -> None:
    response = owner_api.post("/opt-outs", json=body)
    assert response.status_code == 400 and said in response.json()["message"]


def test_every_way_of_writing_a_listed_number_is_refused_on_send(
    owner_api: httpx.Client,
) -> None:
    """With region US: listed as "1 (202) 555-0100", a send to "+12025550100", to
    "202-555-0100", or as given with skipPhoneValidation, finds it."""
    assert owner_api.post("/opt-outs", json={"phoneNumber": "1 (202) 555-0100"}).status_code == 201
    for number, query in (
        ("+12025550100", {}),
        ("202-555-0100", {}),
        ("+1 202 555 0100", {"skipPhoneValidation": "true"}),
        ("12025550100", {"skipPhoneValidation": "true"}),
    ):
        body = {"phoneNumbers": [number], "textMessage": {"text": "x"}}
        answer = owner_api.post("/messages", json=body, params=query).json()
        assert answer["state"] == "Failed", (number, query)
        assert answer["recipients"][0]["error"] == OPTED_OUT
    encrypted = {
        "phoneNumbers": ["+12025550100"],
        "textMessage": {"text": "x"},
        "isEncrypted": True,
    }
    assert owner_api.post("/messages", json=encrypted).json()["state"] == "Pending"  # unreadable


def test_a_message_with_an_opted_out_recipient_cancelled_keeps_that_recipient_failed(
    owner_api: httpx.Client,
) -> None:
    owner_api.post("/opt-outs", json={"phoneNumber": STOPPER})
    body = {"phoneNumbers": [OTHER, STOPPER], "textMessage": {"text": "x"}}
    sent = owner_api.post("/messages", json=body).json()
    cancelled = owner_api.delete(f"/messages/{sent['id']}").json()
    assert cancelled["state"] == "Cancelled"
    assert [(r["state"], r["error"]) for r in cancelled["recipients"]] == [
        ("Cancelled", None),
        ("Failed", OPTED_OUT),
    ]


def test_the_opt_outs_go_with_the_account(
    region_server: LiveServer, owner_api: httpx.Client
) -> None:
    owner_api.post("/opt-outs", json={"phoneNumber": STOPPER})
    [(count,)] = database_rows(region_server.settings, "SELECT count(*) FROM opt_outs")
    assert count == 1
    asyncio.run(_delete_user(region_server, "owner"))
    [(count,)] = database_rows(region_server.settings, "SELECT count(*) FROM opt_outs")
    assert count == 0


async def _delete_user(server: LiveServer, login: str) -> None:
    from smsgw.accounts import service as accounts
    from smsgw.db.engine import database_for

    db = database_for(server.settings)
    try:
        await accounts.delete_user(db, login)
    finally:
        await db.dispose()


def test_a_configured_stop_word_opts_out_too(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path / "data", opt_out_words="Arrêt, stop all")
    with running(settings) as server:
        owner = server.create_user("owner")

        async def scenario() -> None:
            api = Api(server, owner)
            device = await started(phone(server, owner), webhooks=HUB_HOOKS)
            await opted_out_by_sms(api, device, STOPPER, "ARRÊT!")
            device.receive_sms(STOPPER, "unstop")
            await until(lambda: _empty(api))
            await opted_out_by_sms(api, device, STOPPER, "Stop  all")
            await device.stop()
            await api.close()

        run(scenario)


async def _empty(api: Api) -> bool:
    return await listed(api) == []


# --- Stop words (pure) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "meaning"),
    [
        ("STOP", True), ("stop", True), (" Stop. ", True), ("STOP!!", True), ("cancel", True),
        ("End", True), ("QUIT", True), ("unsubscribe", True), ("START", False), ("Unstop.", False),
        ("please stop", None), ("STOP sending", None), ("", None), (None, None), ("STOPP", None),
        ("ST OP", None), ("x" * 1000, None),
    ],
)  # fmt: skip
def test_stop_words_are_the_whole_text_in_any_case(text: str | None, meaning: bool | None) -> None:
    assert Keywords.with_extra("").meaning(text) is meaning


def test_the_extra_words_are_checked() -> None:
    assert parse_extra(" Halt , ,STOP ALL.") == ("halt", "stop all")
    for bad in ("start", "...", "x" * 65):
        with pytest.raises(ValueError):
            parse_extra(bad)


def test_an_extra_word_that_opts_in_stops_the_server_at_start(tmp_path: Path) -> None:
    from smsgw.config import SettingsError, load_settings

    with pytest.raises(SettingsError, match="SMSGW_OPT_OUT_WORDS"):
        load_settings(data_dir=tmp_path, opt_out_words="unstop")
