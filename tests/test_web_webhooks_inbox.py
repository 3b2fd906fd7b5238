"""The dashboard's webhooks and inbox pages over plain HTTP (forms without JavaScript):
webhooks created, listed, told to the phones and deleted, URL rules named on the form, the
signing key shown on request and rotated, the delivery log, CSRF, isolation between users;
received SMS listed with filters and paging, and a refresh reaching the phones."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.clients import TLS
from tests.conftest import Account, LiveServer, running
from tests.fakes.receiver import Receiver
from tests.web_support import Dashboard, alerts_of
from tests.webhook_support import (
    Api,
    drained,
    eventually,
    export_count,
    hub_settings,
    phone,
    run,
    started,
    until,
)

WEBHOOKS = "/dashboard/webhooks"
INBOX = "/dashboard/inbox"


@pytest.fixture
def hub_server(tmp_path: Path) -> Iterator[LiveServer]:
    with running(hub_settings(tmp_path / "data")) as live:
        yield live


@pytest.fixture
def owner(hub_server: LiveServer) -> Account:
    return hub_server.create_user("owner")


@pytest.fixture
def web(hub_server: LiveServer, owner: Account) -> Iterator[Dashboard]:
    dashboard = Dashboard(hub_server)
    assert dashboard.sign_in(owner).status_code == 303
    yield dashboard
    dashboard.close()


def create(web: Dashboard, url: str, event: str = "sms:sent", device: str = "") -> httpx.Response:
    form = {"url": url, "event": event, "deviceId": device}
    return web.post(WEBHOOKS, form, page=WEBHOOKS)


def listed(page: str) -> list[str]:
    return re.findall(r'data-webhook-id="([^"]+)"', page)


def field_errors(page: str) -> list[str]:
    return [html.unescape(e) for e in re.findall(r'class="field-error"[^>]*>([^<]+)<', page)]


def inbox_texts(page: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'<td class="text">([^<]*)</td>', page)]


def rows_of(page: str) -> list[str]:
    return re.findall(r'data-inbox-id="([^"]+)"', page)


def test_a_webhook_is_created_listed_told_to_the_phone_and_deleted(
    hub_server: LiveServer, owner: Account, web: Dashboard
) -> None:
    async def scenario() -> None:
        device = await started(phone(hub_server, owner), webhooks=5)  # inbox events, ping
        device_id = device.credentials.id  # type: ignore[union-attr]
        answer = await asyncio.to_thread(
            create, web, "https://example.com/hook", "sms:delivered", device_id
        )
        assert answer.status_code == 303, alerts_of(answer.text) + field_errors(answer.text)
        page = await asyncio.to_thread(web.http.get, answer.headers["location"])
        [hook_id] = listed(page.text)
        assert "Webhook saved." in page.text and "https://example.com/hook" in page.text
        assert "sms:delivered" in page.text and device_id in page.text
        await eventually(lambda: len(device.webhooks) == 6)  # WebhooksUpdated reached it
        async with Api(hub_server, owner).client as api:
            [shown] = (await api.get("/webhooks")).json()
        assert shown["id"] == hook_id and shown["deviceId"] == device_id
        log = await asyncio.to_thread(web.http.get, f"{WEBHOOKS}/{hook_id}")
        assert log.status_code == 200 and "No delivery yet." in log.text
        gone = await asyncio.to_thread(web.post, f"{WEBHOOKS}/{hook_id}/delete", {}, WEBHOOKS)
        assert gone.status_code == 303
        after = await asyncio.to_thread(web.http.get, gone.headers["location"])
        assert listed(after.text) == [] and "Webhook deleted." in after.text
        await eventually(lambda: len(device.webhooks) == 5)
        await device.stop()

    run(scenario)


def test_the_delivery_log_shows_attempts_newest_first(
    hub_server: LiveServer, owner: Account, web: Dashboard
) -> None:
    receiver = Receiver().start()

    async def scenario() -> None:
        api = Api(hub_server, owner)
        hook = await api.hook(receiver.url, "sms:received")
        device = await started(phone(hub_server, owner), webhooks=5)
        device.receive_sms("+12025550111", "first")
        device.receive_sms("+12025550111", "second")
        await eventually(lambda: len(receiver.delivered()) == 2)

        async def logged() -> bool:  # both attempts recorded as finished, not just started
            deliveries = await api.deliveries(hook["id"])
            return len(deliveries) == 2 and all(d["finishedAt"] for d in deliveries)

        await until(logged)
        page = (await asyncio.to_thread(web.http.get, f"{WEBHOOKS}/{hook['id']}")).text
        rows = re.findall(r'<tr data-event-id="([^"]+)">', page)
        assert rows == [d["eventId"] for d in await api.deliveries(hook["id"])]
        assert page.count("<code>sms:received</code>") >= 2 and " ms</td>" in page
        assert "<td>200</td>" in page
        await device.stop()
        await api.close()

    try:
        run(scenario)
    finally:
        receiver.stop()


def test_a_webhook_disabled_by_a_410_is_shown_with_its_reason(
    hub_server: LiveServer, owner: Account, web: Dashboard
) -> None:
    receiver = Receiver(default=410).start()

    async def scenario() -> None:
        api = Api(hub_server, owner)
        await api.hook(receiver.url, "system:ping", id="gone")
        await api.hook("https://example.com/fine", "sms:sent", id="fine")
        device = await started(phone(hub_server, owner), webhooks=6)
        device.ping()

        async def disabled() -> bool:
            hooks = (await api.client.get("/webhooks")).json()
            return any(h["enabled"] is False for h in hooks)

        await until(disabled)
        page = (await asyncio.to_thread(web.http.get, WEBHOOKS)).text
        rows = dict(re.findall(r'<tr data-webhook-id="([^"]+)">(.*?)</tr>', page, re.S))
        assert "Disabled" in rows["gone"] and "410" in rows["gone"]
        assert "Enabled" in rows["fine"] and "Disabled" not in rows["fine"]
        await device.stop()
        await api.close()

    try:
        run(scenario)
    finally:
        receiver.stop()


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("not a url", "URL: must be an absolute http(s) URL"),
        ("ftp://example.com/x", "URL: must be an absolute http(s) URL"),
        ("", "URL: "),
    ],
)
def test_a_bad_url_is_named_on_the_form(web: Dashboard, url: str, said: str) -> None:
    answer = create(web, url)
    assert answer.status_code == 400
    [error] = field_errors(answer.text)
    assert error.startswith(said)
    assert 'aria-invalid="true"' in answer.text and listed(answer.text) == []


def test_https_and_public_hosts_only_unless_the_operator_allows_private_urls(
    server: LiveServer, alice: Account
) -> None:
    web = Dashboard(server)
    web.sign_in(alice)
    for url, said in (
        ("http://example.com/hook", "URL: must start with https://"),
        ("https://127.0.0.1/hook", "URL: 127.0.0.1 is"),
        ("https://localhost/hook", "URL: localhost is a local name"),
    ):
        answer = create(web, url)
        assert answer.status_code == 400, url
        [error] = field_errors(answer.text)
        assert error.startswith(said), error
    assert listed(web.http.get(WEBHOOKS).text) == []
    web.close()


def test_an_unknown_event_or_another_users_phone_is_refused(
    hub_server: LiveServer, web: Dashboard
) -> None:
    answer = create(web, "https://example.com/x", event="sms:nonsense")
    assert answer.status_code == 400
    assert field_errors(answer.text)[0].startswith("Event: unknown event")
    other = hub_server.create_user("other")

    async def theirs() -> str:
        device = await started(phone(hub_server, other))
        await device.stop()
        return device.credentials.id  # type: ignore[union-attr]

    found: list[str] = []

    async def scenario() -> None:
        found.append(await theirs())

    run(scenario)
    refused = create(web, "https://example.com/x", device=found[0])
    assert refused.status_code == 400
    assert field_errors(refused.text) == ["Phone: not one of your phones"]


def test_the_signing_key_is_shown_on_request_and_rotated(
    hub_server: LiveServer, owner: Account, web: Dashboard
) -> None:
    page = web.http.get(WEBHOOKS).text
    assert 'id="signing-key"' not in page and "X-Signature" in page
    assert 'href="/docs#group-webhooks"' in page
    assert 'id="group-webhooks"' in web.http.get("/docs").text  # the link leads somewhere
    shown = web.post(f"{WEBHOOKS}/key", {}, WEBHOOKS)
    key = re.search(r'id="signing-key" readonly spellcheck="false" value="([^"]+)"', shown.text)
    assert shown.status_code == 200 and key is not None
    with hub_server.client(owner) as api:
        assert api.get("/webhooks/signing/key").json()["signingKey"] == key.group(1)
        rotated = web.post(f"{WEBHOOKS}/key", {"rotate": "1"}, WEBHOOKS)
        new = re.search(
            r'id="signing-key" readonly spellcheck="false" value="([^"]+)"', rotated.text
        )
        assert new is not None and new.group(1) != key.group(1)
        assert api.get("/webhooks/signing/key").json()["signingKey"] == new.group(1)


def test_a_signing_key_set_in_the_settings_is_shown_and_not_rotated(
    hub_server: LiveServer, owner: Account, web: Dashboard
) -> None:
    with hub_server.client(owner) as api:
        mine = "my-own-signing-key-0123456789"
        assert api.patch("/settings", json={"webhooks": {"signing_key": mine}}).status_code == 200
    shown = web.post(f"{WEBHOOKS}/key", {}, WEBHOOKS)
    assert f'value="{mine}"' in shown.text
    refused = web.post(f"{WEBHOOKS}/key", {"rotate": "1"}, WEBHOOKS)
    assert refused.status_code == 409 and mine not in refused.text
    assert "webhooks.signing_key" in alerts_of(refused.text)[0]


def test_the_new_forms_refuse_a_missing_or_foreign_csrf_token(
    hub_server: LiveServer, owner: Account, web: Dashboard
) -> None:
    assert create(web, "https://example.com/keep").status_code == 303
    [hook_id] = listed(web.http.get(WEBHOOKS).text)
    stranger = Dashboard(hub_server)
    stranger.sign_in(hub_server.create_user("stranger"))
    foreign = stranger.csrf(WEBHOOKS)
    for path, form in (
        (WEBHOOKS, {"url": "https://example.com/new", "event": "sms:sent"}),
        (f"{WEBHOOKS}/{hook_id}/delete", {}),
        (f"{WEBHOOKS}/key", {"rotate": "1"}),
        (f"{INBOX}/refresh", {"days": "7"}),
    ):
        for token in ({}, {"csrf": foreign}, {"csrf": "forged"}):
            answer = web.http.post(path, data={**form, **token})
            assert answer.status_code == 403, (path, token)
            assert "This form has expired" in answer.text
    assert listed(web.http.get(WEBHOOKS).text) == [hook_id]
    stranger.close()


def test_another_users_webhook_is_not_found(hub_server: LiveServer, web: Dashboard) -> None:
    assert create(web, "https://example.com/mine").status_code == 303
    [hook_id] = listed(web.http.get(WEBHOOKS).text)
    other = Dashboard(hub_server)
    other.sign_in(hub_server.create_user("other"))
    assert listed(other.http.get(WEBHOOKS).text) == []
    assert other.http.get(f"{WEBHOOKS}/{hook_id}").status_code == 404
    assert other.post(f"{WEBHOOKS}/{hook_id}/delete", {}, WEBHOOKS).status_code == 404
    assert other.http.get(f"{WEBHOOKS}/nonexistent").status_code == 404
    assert listed(web.http.get(WEBHOOKS).text) == [hook_id]
    other.close()


def test_the_pages_need_a_session(hub_server: LiveServer) -> None:
    with httpx.Client(base_url=hub_server.url, verify=TLS) as anonymous:
        for path in (WEBHOOKS, INBOX, f"{WEBHOOKS}/x"):
            answer = anonymous.get(path)
            assert answer.status_code == 303 and "/dashboard/login" in answer.headers["location"]


def test_received_sms_are_listed_with_filters_and_paging(
    hub_server: LiveServer, owner: Account, web: Dashboard
) -> None:
    other = hub_server.create_user("other")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        one = await started(phone(hub_server, owner), webhooks=5)
        two = await started(phone(hub_server, owner), webhooks=5)
        theirs = await started(phone(hub_server, other), webhooks=5)
        base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        for i in range(3):
            one.receive_sms("+12025550111", f"hello {i}", received_at=base + timedelta(hours=i))
        for i in range(18):
            one.receive_data_sms("+12025550112", bytes([i]))
        two.receive_sms("+12025550113", "from <two>", received_at=base + timedelta(days=1))
        theirs.receive_sms("+12025550114", "not yours")

        async def all_stored() -> bool:
            return (await api.inbox())[1] == 22

        await until(all_stored)
        one_id = one.credentials.id  # type: ignore[union-attr]
        two_id = two.credentials.id  # type: ignore[union-attr]

        def get(**params: str) -> str:
            answer = web.http.get(INBOX, params=params)
            assert answer.status_code == 200, alerts_of(answer.text)
            return answer.text

        everything = await asyncio.to_thread(get)
        assert "22 messages" in everything and "not yours" not in everything
        assert "from &lt;two&gt;" in everything  # escaped
        assert inbox_texts(everything) == ["from <two>", "hello 2"]  # after 18 newer data SMS
        assert "+12025550111" in everything and "DATA_SMS" in everything
        sms = await asyncio.to_thread(get, type="SMS")
        assert inbox_texts(sms) == ["from <two>", "hello 2", "hello 1", "hello 0"]
        mine = await asyncio.to_thread(get, deviceId=two_id)
        assert inbox_texts(mine) == ["from <two>"]
        day = await asyncio.to_thread(get, type="SMS", **{"from": "2026-03-01", "to": "2026-03-01"})
        assert inbox_texts(day) == ["hello 2", "hello 1", "hello 0"]
        assert "Page 1 of 2" in everything and len(rows_of(everything)) == 20
        page_two = await asyncio.to_thread(get, page="2")
        assert "Page 2 of 2" in page_two and len(rows_of(page_two)) == 2
        assert set(rows_of(page_two)).isdisjoint(rows_of(everything))
        assert inbox_texts(page_two) == ["hello 1", "hello 0"]
        assert 'rel="prev"' in page_two and 'rel="next"' not in page_two
        data = await asyncio.to_thread(get, type="DATA_SMS", limit="50")
        assert "18 messages" in data and len(rows_of(data)) == 18
        assert one_id in everything
        bad = await asyncio.to_thread(web.http.get, INBOX, params={"type": "nope"})
        assert bad.status_code == 400 and alerts_of(bad.text)[0].startswith("Type:")
        bad_day = await asyncio.to_thread(web.http.get, INBOX, params={"from": "yesterday"})
        assert bad_day.status_code == 400
        for device in (one, two, theirs):
            await device.stop()
        await api.close()

    run(scenario)


def test_refresh_from_phones_asks_the_connected_phones_to_replay(
    hub_server: LiveServer, owner: Account, web: Dashboard
) -> None:
    other = hub_server.create_user("other")

    async def scenario() -> None:
        device = await started(phone(hub_server, owner, skip_processed_on_export=False), webhooks=5)
        theirs = await started(phone(hub_server, other, skip_processed_on_export=False), webhooks=5)
        device.receive_sms("+12025550111", "kept")
        theirs.receive_sms("+12025550111", "theirs")
        posted = lambda d: sum(e == "sms:received" for e, _ in d.webhook_posts)  # noqa: E731
        await eventually(lambda: posted(device) == 1 and posted(theirs) == 1)
        answer = await asyncio.to_thread(web.post, f"{INBOX}/refresh", {"days": "1"}, INBOX)
        assert answer.status_code == 303
        await eventually(lambda: posted(device) == 2)  # replayed on the owner's phone only
        assert theirs.credentials is not None
        assert export_count(hub_server.settings, theirs.credentials.id) == 0
        await until(drained(hub_server.settings))
        assert posted(theirs) == 1
        page = (await asyncio.to_thread(web.http.get, answer.headers["location"])).text
        assert "Asked your phones" in page and inbox_texts(page) == ["kept"]
        for d in (device, theirs):
            await d.stop()

    run(scenario)


def test_mms_rows_show_subject_body_and_parts_to_download(
    hub_server: LiveServer, owner: Account, web: Dashboard
) -> None:
    other = hub_server.create_user("other")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        device = await started(phone(hub_server, owner), webhooks=5)
        parts = [("image/png", "<cat>.png", b"\x89PNG"), ("audio/amr", "voice.amr", None)]
        device.receive_mms("+12025550111", "Holiday <pics>", "Look!", parts)

        async def stored() -> bool:
            return (await api.inbox())[1] == 2

        await until(stored)
        page = (
            await asyncio.to_thread(web.http.get, INBOX, params={"type": "MMS_DOWNLOADED"})
        ).text
        [row] = rows_of(page)
        assert "Holiday &lt;pics&gt;" in page and "Look!" in page and "MMS_DOWNLOADED" in page
        link = f"/dashboard/inbox/{row}/attachments/100"
        assert f'href="{link}"' in page and "&lt;cat&gt;.png" in page
        assert "voice.amr" in page and "attachments/101" not in page  # no bytes: no link
        image = await asyncio.to_thread(web.http.get, link)
        assert image.status_code == 200 and image.content == b"\x89PNG"
        assert image.headers["content-disposition"].startswith("attachment;")
        assert image.headers["x-content-type-options"] == "nosniff"
        assert image.headers["content-security-policy"] == "sandbox; default-src 'none'"
        missing = await asyncio.to_thread(web.http.get, link.replace("100", "101"))
        assert missing.status_code == 404
        # Only ASCII digits below 2**31 name a part: the rest is not found, never a 500.
        arabic_indic, bold = "\u0661\u0660\u0660", "\U0001d7cf\U0001d7ce\U0001d7ce"  # 100
        for bad in ("²", arabic_indic, bold, "2147483648", "9999999999", "-1", "+100", " 100"):
            answer = await asyncio.to_thread(web.http.get, link.replace("100", quote(bad)))
            assert answer.status_code == 404, bad
        intruder = Dashboard(hub_server)
        assert intruder.sign_in(other).status_code == 303
        theirs = await asyncio.to_thread(intruder.http.get, link)
        assert theirs.status_code == 404 and b"PNG" not in theirs.content
        intruder.close()
        anonymous = await asyncio.to_thread(httpx.get, hub_server.url + link)
        assert anonymous.status_code in (303, 401) and b"PNG" not in anonymous.content
        await device.stop()
        await api.close()

    run(scenario)
