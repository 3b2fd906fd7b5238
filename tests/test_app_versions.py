"""Phones of older app releases: each is handed only the webhook events its release can parse
(an unknown one breaks its sync and with it every webhook), its version is kept and shown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from smsgw.cli import app
from smsgw.devices import appversion
from tests.clients import TLS
from tests.conftest import Account, LiveServer, database_environment, running
from tests.fakes.phone import SimulatedPhone
from tests.fakes.phone_webhooks import EVENT_SINCE, app_events
from tests.web_support import Dashboard
from tests.webhook_support import MOBILE, Api, eventually, hub_settings, phone, run, until

EVENTS = list(EVENT_SINCE)
#: Each release on either side of the first release knowing some event.
BOUNDARIES = [
    ("1.15.0", {"sms:received"}),
    ("1.16.0", {"sms:received", "system:ping"}),
    ("1.17.0", {"sms:received", "system:ping"}),
    ("1.18.0", {"sms:received", "system:ping", "sms:sent"}),
    ("1.19.0", {"sms:received", "system:ping", "sms:sent", "sms:delivered", "sms:failed"}),
    ("1.38.1", app_events("1.19.0")),
    ("1.39.0", app_events("1.19.0") | {"sms:data-received"}),
    ("1.46.1", app_events("1.39.0")),
    ("1.47.0", app_events("1.39.0") | {"mms:received"}),
    ("1.52.0", app_events("1.47.0")),
    ("1.55.1", app_events("1.47.0")),
    ("1.56.0", app_events("1.47.0") | {"mms:downloaded"}),
    ("1.65.3", app_events("1.56.0")),
    ("1.66.0", app_events("1.56.0") | {"app:started"}),
    ("1.66.2", app_events("1.66.0")),
    ("1.67.0", set(EVENTS)),
    ("1.68.0", set(EVENTS)),
]


@pytest.fixture
def hub_server(tmp_path: Path) -> Iterator[LiveServer]:
    with running(hub_settings(tmp_path / "data", registration_rate_limit=1000)) as live:
        yield live


async def subscribe_to_everything(api: Api) -> None:
    for event in EVENTS:
        await api.hook("http://127.0.0.1:9/hook", event)


def test_each_release_gets_exactly_the_events_it_knows(hub_server: LiveServer) -> None:
    """The fake parses the list as the release does (an unknown event fails the sync)."""
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        await subscribe_to_everything(api)
        for version, expected in BOUNDARIES:
            device = phone(hub_server, owner, app_version=version)
            await device.register()
            await device.sync_webhooks()  # raises if the release could not parse the list
            assert {hook["event"] for hook in device.webhooks} == expected, version
            await device.kill()
        await api.close()

    run(scenario)


def test_a_phone_without_a_version_gets_the_newest_list(hub_server: LiveServer) -> None:
    """No app User-Agent (or a self-built app's placeholder 1.0.0): every event, as before."""
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        await subscribe_to_everything(api)
        device = phone(hub_server, owner, app_version="1.0.0")
        credentials = await device.register()
        await device.sync_webhooks()
        assert {hook["event"] for hook in device.webhooks} == set(EVENTS)
        await device.kill()
        async with httpx.AsyncClient(base_url=hub_server.url + MOBILE, verify=TLS) as plain:
            listed = await plain.get(
                "/webhooks",
                headers={"Authorization": f"Bearer {credentials.token}", "User-Agent": "curl/8"},
            )
        assert {hook["event"] for hook in listed.json()} == set(EVENTS)
        await api.close()

    run(scenario)


def test_a_1_55_phone_keeps_its_webhooks_and_fills_the_inbox(hub_server: LiveServer) -> None:
    """Before, the hub always listed mms:downloaded: a 1.55 phone's sync failed, it never
    posted a received SMS, and the inbox stayed empty."""
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        device = phone(hub_server, owner, app_version="1.55.1")
        await device.start()
        await eventually(lambda: device.sse_opens > 0 and len(device.webhooks) == 4)
        assert device.webhook_sync_failures == 0
        device.receive_sms("+12025550111", "Your code is 1234")

        async def stored() -> bool:
            return (await api.inbox())[1] == 1

        await until(stored)
        await device.stop()
        await api.close()

    run(scenario)


def test_direct_mode_hands_an_old_phone_none_of_the_events_it_does_not_know(
    tmp_path: Path,
) -> None:
    with running(hub_settings(tmp_path / "data", webhooks_mode="direct")) as server:
        owner = server.create_user("owner")

        async def scenario() -> None:
            api = Api(server, owner)
            await subscribe_to_everything(api)
            device = phone(server, owner, app_version="1.46.1")
            await device.register()
            await device.sync_webhooks()
            theirs = {h["event"] for h in device.webhooks if not h["id"].startswith("smsgw-")}
            assert theirs == app_events("1.46.1")
            ours = {h["event"] for h in device.webhooks if h["id"].startswith("smsgw-")}
            assert ours == {"sms:received", "sms:data-received", "system:ping"}
            await device.kill()
            await api.close()

        run(scenario)


def listed_versions(server: LiveServer, account: Account) -> dict[str, str | None]:
    with server.client(account) as client:
        return {d["id"]: d.get("appVersion") for d in client.get("/devices").json()}


def test_the_last_version_seen_is_kept_and_shown(hub_server: LiveServer) -> None:
    owner = hub_server.create_user("owner")
    made: list[SimulatedPhone] = []

    async def first_start(version: str) -> str:
        device = phone(hub_server, owner, app_version=version)
        made.append(device)
        credentials = await device.register()
        return credentials.id

    async def scenario() -> None:
        device_id = await first_start("1.52.0")
        assert listed_versions(hub_server, owner) == {device_id: "1.52.0"}
        old = made[0]
        assert old.credentials is not None
        upgraded = phone(hub_server, owner, app_version="1.68.0", credentials=old.credentials)
        await upgraded.start()  # the app restarts after an update: PATCH /device
        await eventually(lambda: upgraded.sse_opens > 0)  # the stream names no version
        assert listed_versions(hub_server, owner) == {device_id: "1.68.0"}
        await upgraded.stop()
        await old.kill()

    run(scenario)
    web = Dashboard(hub_server)
    web.sign_in(owner)
    page = web.http.get("/dashboard/phones").text
    assert "App version" in page and "1.68.0" in page
    web.close()


def test_the_dashboard_says_when_a_phone_only_polls(hub_server: LiveServer) -> None:
    """A 1.52 phone with an FCM token (Google Play services) never opens the event stream."""
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        old = phone(hub_server, owner, app_version="1.52.0")
        credentials = await old.register()
        async with httpx.AsyncClient(base_url=hub_server.url + MOBILE, verify=TLS) as client:
            answer = await client.patch(
                "/device",
                json={"id": credentials.id, "pushToken": "fcm-token-of-the-phone"},
                headers={
                    "Authorization": f"Bearer {credentials.token}",
                    "User-Agent": "me.capcom.smsgateway/1.52.0",
                },
            )
            assert answer.status_code == 204
        await old.kill()
        current = phone(hub_server, owner, app_version="1.53.0", name="Google/husky")
        await current.register()
        await current.kill()

    run(scenario)
    web = Dashboard(hub_server)
    web.sign_in(owner)
    page = web.http.get("/dashboard/phones").text
    rows = page.split("<tr data-device-id=")[1:]
    assert len(rows) == 2
    [old_row] = [row for row in rows if "1.52.0" in row]
    [new_row] = [row for row in rows if "1.53.0" in row]
    assert "Polls only every 15 minutes" in old_row and "Polls only" not in new_row
    web.close()
    settings = hub_server.settings
    env = {
        **database_environment(settings),
        "SMSGW_DATA_DIR": str(settings.data_dir),
        "COLUMNS": "250",
    }
    listed = CliRunner().invoke(app, ["devices", "list", "--user", owner.login], env=env)
    assert listed.exit_code == 0, listed.output
    assert "1.52.0 (polls only)" in listed.output and "1.53.0 " in listed.output


@pytest.mark.parametrize(
    ("header", "version"),
    [
        ("me.capcom.smsgateway/1.68.0", "1.68.0"),
        ("me.capcom.smsgateway/1.55.1 (Android 14)", "1.55.1"),
        ("okhttp/4.10.0", None),
        ("me.capcom.smsgateway/", None),
        ("me.capcom.smsgateway/<script>", None),
        (None, None),
    ],
)
def test_the_version_is_read_from_the_app_user_agent_only(
    header: str | None, version: str | None
) -> None:
    assert appversion.from_user_agent(header) == version


def test_an_older_release_with_push_polls_and_a_newer_one_does_not() -> None:
    assert appversion.polls_only("1.42.0", None)
    assert appversion.polls_only("1.52.5", "token") and not appversion.polls_only("1.52.5", None)
    assert not appversion.polls_only("1.53.0", "token")
    assert not appversion.polls_only(None, "token") and not appversion.polls_only("1.0.0", "x")
