"""The webhooks API: registration rules, upsert, owner scoping, the signing key, and what
phones are told (hub endpoints of smsgw, or the users' URLs in direct mode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.clients import TLS
from tests.conftest import API, LiveServer, make_settings, running
from tests.test_tokens import bearer, issue, server_process
from tests.webhook_support import MOBILE, Api, eventually, hub_settings, phone, run, started


@pytest.fixture
def hub_server(tmp_path: Path) -> Iterator[LiveServer]:
    with running(hub_settings(tmp_path / "data")) as live:
        yield live


def test_register_list_replace_and_delete_a_webhook(api: httpx.Client) -> None:
    created = api.post("/webhooks", json={"url": "https://example.com/a", "event": "sms:received"})
    assert created.status_code == 201, created.text
    hook = created.json()
    assert len(hook["id"]) == 21 and hook["deviceId"] is None
    assert hook | {"id": None} == {
        "id": None, "deviceId": None, "url": "https://example.com/a", "event": "sms:received",
        "enabled": True, "disabledReason": None,
    }  # fmt: skip
    replaced = api.post(
        "/webhooks", json={"id": hook["id"], "url": "https://example.com/b", "event": "sms:sent"}
    )
    assert replaced.status_code == 201
    listed = api.get("/webhooks").json()
    assert [(h["id"], h["url"], h["event"]) for h in listed] == [
        (hook["id"], "https://example.com/b", "sms:sent")
    ]
    assert api.delete(f"/webhooks/{hook['id']}").status_code == 204
    assert api.delete(f"/webhooks/{hook['id']}").status_code == 204  # gone already: still 204
    assert api.get("/webhooks").json() == []


def test_a_chosen_id_is_kept(api: httpx.Client) -> None:
    body = {"id": "my-hook", "url": "https://example.com/x", "event": "system:ping"}
    assert api.post("/webhooks", json=body).json()["id"] == "my-hook"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"url": "https://example.com", "event": "sms:nope"}, "unknown event"),
        ({"url": "http://example.com/hook", "event": "sms:received"}, "https://"),
        ({"url": "ftp://example.com/hook", "event": "sms:received"}, "http(s) URL"),
        ({"event": "sms:received"}, "url"),
        ({"url": "https://example.com"}, "event"),
        ({"url": "https://127.0.0.1/hook", "event": "sms:received"}, "loopback"),
        ({"url": "https://10.1.2.3/hook", "event": "sms:received"}, "private"),
        ({"url": "https://169.254.169.254/latest", "event": "sms:received"}, "metadata"),
        ({"url": "https://[::1]/hook", "event": "sms:received"}, "loopback"),
        ({"url": "https://localhost/hook", "event": "sms:received"}, "local name"),
        ({"url": "https://2130706433/hook", "event": "sms:received"}, "loopback"),
        ({"url": "https://127.1/hook", "event": "sms:received"}, "loopback"),
        ({"url": "https://0/hook", "event": "sms:received"}, "unspecified"),
        ({"url": "https://[2002:a9fe:a9fe::]/", "event": "sms:received"}, "metadata"),
        ({"url": "https://[::1/hook", "event": "sms:received"}, "not a valid URL"),
        ({"url": "https://example.com:99999/", "event": "sms:received"}, "not a valid URL"),
        ({"url": "https://exa mple.com/", "event": "sms:received"}, "http(s) URL"),
        ({"url": "https://example.com/" + "a" * 300, "event": "sms:received"}, "url"),
        ({"id": "x" * 37, "url": "https://example.com", "event": "sms:sent"}, "id"),
        (
            {"url": "https://example.com", "event": "sms:sent", "deviceId": "nope"},
            'invalid "device_id" = "nope": record not found',
        ),
    ],
)
def test_bad_webhooks_get_a_400_naming_the_problem(
    shared_api: httpx.Client, body: dict[str, str], fragment: str
) -> None:
    response = shared_api.post("/webhooks", json=body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["message"]


def test_webhooks_belong_to_their_owner(server: LiveServer, api: httpx.Client) -> None:
    api.post("/webhooks", json={"id": "a1", "url": "https://example.com", "event": "sms:sent"})
    with server.client(server.create_user("bob")) as bob:
        assert bob.get("/webhooks").json() == []
        assert bob.delete("/webhooks/a1").status_code == 204
        assert bob.get("/webhooks/a1/deliveries").status_code == 404
        bob.post("/webhooks", json={"id": "a1", "url": "https://bob.example", "event": "sms:sent"})
    assert [h["url"] for h in api.get("/webhooks").json()] == ["https://example.com"]


def test_the_signing_key_is_stable_until_rotated(api: httpx.Client) -> None:
    first = api.get("/webhooks/signing/key").json()["signingKey"]
    assert len(first) >= 24 and api.get("/webhooks/signing/key").json()["signingKey"] == first
    rotated = api.post("/webhooks/signing/key").json()["signingKey"]
    assert rotated != first and api.get("/webhooks/signing/key").json()["signingKey"] == rotated


def test_a_signing_key_set_in_the_settings_wins(api: httpx.Client) -> None:
    generated = api.get("/webhooks/signing/key").json()["signingKey"]
    mine = "my-own-signing-key-0123456789"
    assert api.patch("/settings", json={"webhooks": {"signing_key": mine}}).status_code == 200
    assert api.get("/webhooks/signing/key").json()["signingKey"] == mine
    refused = api.post("/webhooks/signing/key")
    assert refused.status_code == 409 and "/settings" in refused.json()["message"]
    # Cleared in the settings: the generated key is back.
    assert api.patch("/settings", json={"webhooks": {"signing_key": ""}}).status_code == 200
    assert api.get("/webhooks/signing/key").json()["signingKey"] == generated


def test_webhooks_need_credentials(server: LiveServer) -> None:
    with server.client() as anonymous:
        assert anonymous.get("/webhooks").status_code == 401
        assert anonymous.get("/inbox").status_code == 401


#: What every phone posts to smsgw: the received messages that fill the inbox, and its pings
#: (the phone's health, for the dashboard).
HUB_POSTS = ("sms:received", "sms:data-received", "mms:received", "mms:downloaded", "system:ping")


def test_phones_get_smsgw_endpoints_and_hear_of_changes(
    hub_server: LiveServer, tmp_path: Path
) -> None:
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        device = await started(phone(hub_server, owner), webhooks=5)
        hook_base = f"{hub_server.url}{MOBILE}/hooks/{device.credentials.id}/"  # type: ignore[union-attr]
        assert {h["event"] for h in device.webhooks} == set(HUB_POSTS)
        assert all(h["url"].startswith(hook_base) for h in device.webhooks)
        await api.hook("https://example.com/sent", "sms:sent")
        await eventually(lambda: len(device.webhooks) == 6)
        assert {h["event"] for h in device.webhooks} == {*HUB_POSTS, "sms:sent"}
        assert all(h["url"].startswith(hook_base) for h in device.webhooks)
        await api.hook("https://example.com/batch", "sms:batch:received")  # not for phones
        await eventually(lambda: ("WebhooksUpdated", None) in device.events[2:])
        await device.sync_webhooks()
        assert len(device.webhooks) == 6
        await device.stop()
        await api.close()

    run(scenario)


def test_hub_urls_use_the_public_url_when_set(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path / "data", public_url="https://sms.example.com/")
    with running(settings) as live:
        owner = live.create_user("owner")

        async def scenario() -> None:
            device = await started(phone(live, owner), webhooks=5)
            prefix = f"https://sms.example.com{MOBILE}/hooks/"
            assert all(h["url"].startswith(prefix) for h in device.webhooks)
            await device.stop()

        run(scenario)


def test_direct_mode_hands_phones_the_users_urls(tmp_path: Path) -> None:
    with running(hub_settings(tmp_path / "data", webhooks_mode="direct")) as live:
        owner = live.create_user("owner")

        async def scenario() -> None:
            api = Api(live, owner)
            await api.hook("https://example.com/in", "sms:received", id="mine")
            device = await started(phone(live, owner), webhooks=6)
            urls = {h["id"]: h["url"] for h in device.webhooks}
            assert urls["mine"] == "https://example.com/in"  # the phone posts there itself
            # The inbox still fills, and pings still keep the phone's health.
            assert sum(u.startswith(live.url) for u in urls.values()) == 5
            await device.stop()
            await api.close()

        run(scenario)


def test_a_hook_url_takes_posts_only_with_its_phones_secret(
    hub_server: LiveServer, tmp_path: Path
) -> None:
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        one = await started(phone(hub_server, owner), webhooks=5)
        two = await started(phone(hub_server, owner), webhooks=5)
        url_one = one.webhooks[0]["url"]
        secret_two = two.webhooks[0]["url"].rsplit("/", 1)[1]
        envelope = {"id": "e1", "webhookId": "w", "event": "system:ping", "payload": {}}
        async with httpx.AsyncClient(verify=TLS) as client:
            assert (await client.post(url_one, json=envelope)).status_code == 204
            forged = url_one.rsplit("/", 1)[0] + "/" + secret_two
            answer = await client.post(forged, json=envelope)
            assert answer.status_code == 401 and answer.json() == {"message": "Unauthorized"}
            odd = await client.post(url_one.rsplit("/", 1)[0] + "/%C3%A8", json=envelope)
            assert odd.status_code == 401
            bad = await client.post(url_one, json={**envelope, "event": "sms:whatever"})
            assert bad.status_code == 400 and "unknown event" in bad.json()["message"]
            bad = await client.post(
                url_one, content=b"{", headers={"content-type": "application/json"}
            )
            assert bad.status_code == 400
        for device in (one, two):
            await device.stop()

    run(scenario)


def test_odd_values_in_a_phones_post_never_give_a_500(hub_server: LiveServer) -> None:
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        await api.hook("https://example.com/sent", "sms:sent")
        device = await started(phone(hub_server, owner), webhooks=6)
        url = next(h["url"] for h in device.webhooks if h["event"] == "sms:sent")
        inbox_url = next(h["url"] for h in device.webhooks if h["event"] == "sms:received")
        sent = {"messageId": "m1", "recipient": "9" * 600, "sentAt": "2026-11-27T06:00:00Z"}
        received = {
            "messageId": "r1", "message": "hi", "phoneNumber": "+12025550100",
            "simNumber": 10**20, "receivedAt": "2026-11-27T06:00:00Z",
        }  # fmt: skip
        async with httpx.AsyncClient(verify=TLS) as client:
            for _ in range(2):  # the same event twice: stored once, both accepted
                envelope = {"id": "e1", "webhookId": "w", "event": "sms:sent", "payload": sent}
                assert (await client.post(url, json=envelope)).status_code == 204
            envelope = {"id": "e2", "webhookId": "w", "event": "sms:received", "payload": received}
            assert (await client.post(inbox_url, json=envelope)).status_code == 204
        rows, total = await api.inbox()
        assert total == 1 and rows[0].get("simNumber") is None, rows
        await device.stop()
        await api.close()

    run(scenario)


def test_hook_secrets_stay_out_of_the_access_log(tmp_path: Path) -> None:
    """`smsgw serve` logs every request; a hook URL's secret is written as `***`."""
    output = tmp_path / "serve.log"
    settings = make_settings(tmp_path / "data")
    with output.open("wb") as sink, server_process(settings, "info", sink) as api_url:
        base = api_url.removesuffix(API)
        path = f"{MOBILE}/hooks/some-device/the-secret-part-0123456789"
        envelope = {"id": "e1", "webhookId": "w", "event": "system:ping", "payload": {}}
        assert httpx.post(base + path, json=envelope, verify=TLS).status_code == 401
    logged = output.read_text()
    assert f"{MOBILE}/hooks/some-device/*** HTTP/1.1" in logged, logged
    assert "the-secret-part" not in logged


def test_setting_the_signing_key_needs_the_webhooks_write_scope(server: LiveServer) -> None:
    account = server.create_user("scoped")
    key = {"webhooks": {"signing_key": "a-key-the-token-holder-knows"}}
    with bearer(server, issue(server, account, ["settings:write"])["access_token"]) as client:
        refused = client.patch("/settings", json=key)
        assert refused.status_code == 403
        assert refused.json() == {"message": "scope required: webhooks:write"}
        assert client.put("/settings", json=key).status_code == 403
        # Other settings need only settings:write.
        assert client.patch("/settings", json={"ping": {"interval_seconds": 60}}).status_code == 200
    both = ["settings:write", "webhooks:write"]
    with bearer(server, issue(server, account, both)["access_token"]) as client:
        assert client.patch("/settings", json=key).status_code == 200
