"""Account settings: the whitelist, validation naming each field, write-only secrets, and
phones told of changes (SettingsUpdated, then the mobile GET /settings)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.clients import TLS
from tests.conftest import Account, LiveServer
from tests.fakes.phone import SimulatedPhone
from tests.test_phones import MOBILE, _true, eventually, run

SSE_ONLY = {"gateway": {"notification_channel": "SSE_ONLY"}}


def refused(api: httpx.Client, method: str, body: Any) -> str:
    response = api.request(method, "/settings", json=body)
    assert response.status_code == 400, response.text
    message: str = response.json()["message"]
    assert message.startswith("Invalid settings format: ")
    return message


def test_settings_start_empty_and_patch_merges_section_by_section(api: httpx.Client) -> None:
    assert api.get("/settings").json() == {}
    first = api.patch("/settings", json={"messages": {"limit_period": "PerMinute"}})
    assert first.status_code == 200, first.text
    assert first.json() == {"messages": {"limit_period": "PerMinute"}}
    second = api.patch("/settings", json={"messages": {"limit_value": 10}, "ping": None})
    expected = {"messages": {"limit_period": "PerMinute", "limit_value": 10}}
    assert second.json() == expected
    assert api.get("/settings").json() == expected


def test_put_replaces_every_setting(api: httpx.Client) -> None:
    api.patch("/settings", json={"messages": {"limit_value": 10}, "ping": {"interval_seconds": 60}})
    response = api.put("/settings", json={"logs": {"lifetime_days": 7}})
    assert response.status_code == 200, response.text
    assert api.get("/settings").json() == {"logs": {"lifetime_days": 7}}


def test_null_values_are_stored_as_resets(api: httpx.Client) -> None:
    api.patch("/settings", json={"ping": {"interval_seconds": 60}})
    assert api.patch("/settings", json={"ping": {"interval_seconds": None}}).json() == {
        "ping": {"interval_seconds": None}
    }


def test_every_invalid_value_is_named_and_nothing_is_stored(api: httpx.Client) -> None:
    body = {
        "messages": {"limit_period": "Weekly", "limit_value": 0, "work_hours_start": "25:00"},
        "ping": {"interval_seconds": "60"},
        "webhooks": {"internet_required": "yes"},
        "receiver": {"content_provider_enabled": 1},
    }
    message = refused(api, "PATCH", body)
    for field in (
        "messages.limit_period: must be one of Disabled, PerMinute, Per30Minutes",
        "messages.limit_value: must be between 1 and",
        "messages.work_hours_start: must be a time of day as HH:mm",
        "ping.interval_seconds: must be an integer",
        "webhooks.internet_required: must be true or false",
        "receiver.content_provider_enabled: must be true or false",
    ):
        assert field in message, message
    assert api.get("/settings").json() == {}


def test_unknown_sections_and_keys_and_wrong_shapes_are_refused(api: httpx.Client) -> None:
    assert "colour: unknown settings section" in refused(api, "PATCH", {"colour": {}})
    assert "ping.every: unknown setting" in refused(api, "PUT", {"ping": {"every": 5}})
    assert "ping: must be an object" in refused(api, "PATCH", {"ping": 5})
    assert "the body must be a JSON object" in api.patch("/settings", json=[1]).json()["message"]
    text = api.patch("/settings", content=b"limit=5", headers={"Content-Type": "text/plain"})
    assert text.status_code == 400, text.text


def test_rules_across_keys_hold_on_the_merged_settings(api: httpx.Client) -> None:
    api.patch("/settings", json={"messages": {"send_interval_min": 10}})
    message = refused(api, "PATCH", {"messages": {"send_interval_max": 5}})
    assert "messages.send_interval_max: must be at least messages.send_interval_min" in message
    message = refused(api, "PATCH", {"messages": {"work_hours_enabled": True}})
    assert "messages.work_hours_start: required when work_hours_enabled is true" in message
    ok = {"work_hours_enabled": True, "work_hours_start": "09:00", "work_hours_end": "17:30"}
    assert api.patch("/settings", json={"messages": ok}).status_code == 200


def test_phones_must_stay_on_server_sent_events(api: httpx.Client) -> None:
    message = refused(api, "PATCH", {"gateway": {"notification_channel": "AUTO"}})
    assert "gateway.notification_channel: smsgw reaches phones over Server-Sent Events" in message
    ok = api.patch("/settings", json={"gateway": {"notification_channel": "SSE_ONLY"}})
    assert ok.json() == SSE_ONLY


def test_keys_the_server_does_not_set_are_checked_then_dropped(api: httpx.Client) -> None:
    body = {
        "messages": {"processing_order": "FIFO", "limit_value": 3},
        "gateway": {"cloud_url": "https://elsewhere.example", "private_token": "x"},
    }
    assert api.patch("/settings", json=body).json() == {
        "messages": {"limit_value": 3},
        "gateway": {},
    }
    assert "messages.processing_order" in refused(
        api, "PATCH", {"messages": {"processing_order": "RANDOM"}}
    )


def test_secrets_are_write_only(api: httpx.Client) -> None:
    body = {"encryption": {"passphrase": None}, "webhooks": {"signing_key": "k3y"}}
    response = api.patch("/settings", json=body)
    assert response.json() == {"encryption": {}, "webhooks": {}}
    assert "k3y" not in api.get("/settings").text


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_the_end_to_end_passphrase_is_refused_saying_why(api: httpx.Client, method: str) -> None:
    body = {"encryption": {"passphrase": "correct horse"}, "ping": {"interval_seconds": 60}}
    response = api.request(method, "/settings", json=body)
    assert response.status_code == 400
    message = response.json()["message"]
    assert "encryption.passphrase: must not be set through the server" in message
    assert "end-to-end" in message
    assert api.get("/settings").json() == {}  # nothing of the body was stored
    # Clearing it (null or empty) is fine: that only resets the phones' own.
    for cleared in (None, ""):
        ok = api.request(method, "/settings", json={"encryption": {"passphrase": cleared}})
        assert ok.status_code == 200, ok.text


def test_settings_belong_to_their_account(server: LiveServer, api: httpx.Client) -> None:
    api.patch("/settings", json={"ping": {"interval_seconds": 60}})
    with server.client(server.create_user("bob")) as bob:
        assert bob.get("/settings").json() == {}
    with server.client() as anonymous:
        assert anonymous.get("/settings").status_code == 401
        assert anonymous.patch("/settings", json={}).status_code == 401


def test_a_phone_is_told_of_new_settings_and_reads_them(server: LiveServer, alice: Account) -> None:
    async def scenario() -> None:
        device = SimulatedPhone(server.url + MOBILE, login=(alice.login, alice.password))
        await device.start()
        await eventually(lambda: _true(device.settings == SSE_ONLY))
        told = sum(1 for name, _ in device.events if name == "SettingsUpdated")
        body = {
            "messages": {"limit_period": "PerHour", "limit_value": 50},
            "webhooks": {"signing_key": "phone-needs-this", "retry_count": None},
        }
        auth = (alice.login, alice.password)
        async with httpx.AsyncClient(base_url=server.api, auth=auth, verify=TLS) as client:
            response = await client.patch("/settings", json=body)
        assert response.status_code == 200, response.text
        expected = {
            "messages": {"limit_period": "PerHour", "limit_value": 50},
            # A null goes to the phone as stored: the app resets that key to its default.
            "webhooks": {"signing_key": "phone-needs-this", "retry_count": None},
            **SSE_ONLY,
        }
        await eventually(lambda: _true(device.settings == expected))
        assert sum(1 for name, _ in device.events if name == "SettingsUpdated") == told + 1
        await device.stop()

    run(scenario)


def test_a_change_is_logged_by_key_never_by_value(api: httpx.Client) -> None:
    body = {"webhooks": {"signing_key": "never-in-the-log"}, "ping": {"interval_seconds": 30}}
    api.patch("/settings", json=body)
    api.put("/settings", json={"logs": {"lifetime_days": 3}})
    found = [e for e in api.get("/logs").json() if e["module"] == "settings"]
    assert [(e["message"], e["context"]) for e in found] == [
        ("settings changed", {"keys": ["ping.interval_seconds", "webhooks.signing_key"]}),
        ("settings replaced", {"keys": ["logs.lifetime_days"]}),
    ]
    assert "never-in-the-log" not in str(found)


def test_a_passphrase_stored_before_it_was_refused_never_reaches_phones(
    server: LiveServer, alice: Account
) -> None:
    from smsgw.accounts import service as accounts
    from smsgw.accountsettings import repository
    from smsgw.accountsettings import service as account_settings
    from smsgw.db.engine import database_for
    from smsgw.domain import clock

    async def scenario() -> None:
        db = database_for(server.settings)
        try:
            user_id = await accounts.user_id_of(db, alice.login)
            legacy = {"encryption": {"passphrase": "old"}, "ping": {"interval_seconds": None}}
            async with db.write() as conn:
                await repository.store(conn, user_id, legacy, clock.now())
            sent = await account_settings.for_phone(db, user_id)
        finally:
            await db.dispose()
        assert "encryption" not in sent
        assert sent["ping"] == {"interval_seconds": None}

    run(scenario)
