"""The web pages over plain HTTP: sessions, cookies, CSRF, forms without JavaScript."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.clients import TLS
from tests.conftest import Account, LiveServer, make_settings, running
from tests.web_support import Dashboard, alerts_of, csrf_of


@pytest.fixture
def web(server: LiveServer) -> Iterator[Dashboard]:
    dashboard = Dashboard(server)
    yield dashboard
    dashboard.close()


@pytest.fixture
def signed_in(web: Dashboard, alice: Account) -> Dashboard:
    assert web.sign_in(alice).status_code == 303
    return web


def test_pages_that_need_a_session_send_the_visitor_to_sign_in(web: Dashboard) -> None:
    for path in ("/dashboard", "/dashboard/messages?state=Sent", "/dashboard/phones"):
        response = web.http.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/dashboard/login?next=%2Fdashboard")
    assert web.http.get("/dashboard/live").status_code == 401


def session_cookie(response: httpx.Response) -> str:
    [cookie] = [c for c in response.headers.get_list("set-cookie") if "smsgw_session=" in c]
    return cookie


def test_pages_cannot_be_framed_and_load_only_our_own_scripts(web: Dashboard) -> None:
    for path in ("/", "/docs", "/docs/interactive", "/dashboard/login"):
        headers = web.http.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "default-src 'self'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"


def test_an_unknown_dashboard_page_says_so(signed_in: Dashboard) -> None:
    response = signed_in.http.get("/dashboard/nothing/here")
    assert response.status_code == 404
    assert alerts_of(response.text) == ["There is no such page."]
    missing = signed_in.http.get("/dashboard/messages/no-such-id")
    assert missing.status_code == 404
    assert alerts_of(missing.text) == ["No such message of yours."]


def test_the_session_cookie_is_httponly_lax_and_secure_only_over_https(
    server: LiveServer, alice: Account, tmp_path: Path
) -> None:
    plain = Dashboard(server)
    cookie = session_cookie(plain.sign_in(alice))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    plain.close()
    behind_tls = make_settings(tmp_path / "tls", public_url="https://sms.example.org/")
    with running(behind_tls) as proxied:
        web = Dashboard(proxied)
        proxied.create_user("alice")
        # httpx keeps Secure cookies for https: carry the sign-in form's cookie by hand.
        form = web.http.get("/dashboard/login")
        login_cookie = form.headers["set-cookie"].split(";")[0]
        assert "Secure" in form.headers["set-cookie"]
        fields = {"csrf": csrf_of(form.text), "login": "alice", "password": alice.password}
        signed = httpx.post(
            f"{proxied.url}/dashboard/login",
            data=fields,
            headers={"Cookie": login_cookie},
            verify=TLS,
        )
        cookie = session_cookie(signed)
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        web.http.headers["Cookie"] = cookie.split(";")[0]
        phones = web.http.get("/dashboard/phones").text
        assert "https://sms.example.org/api/mobile/v1" in phones
        docs = web.http.get("/docs").text
        assert '<code id="base-url">https://sms.example.org/api/3rdparty/v1</code>' in docs
        web.close()


def test_sign_in_attempts_are_limited_per_address(tmp_path: Path) -> None:
    with running(make_settings(tmp_path / "data", web_login_rate_limit=3)) as server:
        alice = server.create_user("alice")
        web = Dashboard(server)
        assert [web.sign_in(alice, "wrong").status_code for _ in range(3)] == [401] * 3
        refused = web.sign_in(alice)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert alerts_of(refused.text)[0].startswith("Too many sign-in attempts; try again in")
        web.close()


def test_a_wrong_password_is_refused_with_a_message(web: Dashboard, alice: Account) -> None:
    response = web.sign_in(alice, password="not the password")
    assert response.status_code == 401
    assert alerts_of(response.text) == ["Wrong login or password."]
    assert "smsgw_session" not in response.headers.get("set-cookie", "")


def test_sign_in_without_the_form_token_is_refused(web: Dashboard, alice: Account) -> None:
    form = {"login": alice.login, "password": alice.password}
    response = web.http.post("/dashboard/login", data=form)
    assert response.status_code == 403
    assert "smsgw_session" not in response.headers.get("set-cookie", "")


def test_forms_without_this_sessions_csrf_token_are_refused(
    server: LiveServer, signed_in: Dashboard, alice: Account, api: httpx.Client
) -> None:
    send = {"phoneNumbers": "+12025550100", "text": "forged"}
    assert signed_in.http.post("/dashboard/send", data=send).status_code == 403
    other = Dashboard(server)
    other.sign_in(alice)
    foreign = csrf_of(other.http.get("/dashboard/send").text)
    response = signed_in.http.post("/dashboard/send", data={**send, "csrf": foreign})
    assert response.status_code == 403
    assert "expired or came from another site" in alerts_of(response.text)[0]
    assert api.get("/messages").json() == []
    for path in ("/dashboard/logout", "/dashboard/phones/code", "/dashboard/account/password"):
        assert signed_in.http.post(path, data={"csrf": "x"}).status_code == 403
    other.close()


def test_send_list_read_and_cancel_work_as_plain_forms(
    signed_in: Dashboard, api: httpx.Client
) -> None:
    sent = signed_in.send("Hello without JavaScript", simNumber="2", priority="100")
    assert sent.status_code == 303
    message_id = sent.headers["location"].split("/")[-1].split("?")[0]
    stored = api.get(f"/messages/{message_id}").json()
    assert stored["textMessage"] == {"text": "Hello without JavaScript"}
    assert (stored["simNumber"], stored["priority"], stored["state"]) == (2, 100, "Pending")
    table = signed_in.http.get("/dashboard/messages").text
    assert f'data-message-id="{message_id}"' in table and "+12025550100" in table
    detail = signed_in.http.get(sent.headers["location"])
    assert "Message queued" in detail.text and "Cancel this message" in detail.text
    cancelled = signed_in.post(
        f"/dashboard/messages/{message_id}/cancel", page=sent.headers["location"]
    )
    assert cancelled.status_code == 303
    assert api.get(f"/messages/{message_id}").json()["state"] == "Cancelled"
    again = signed_in.post(f"/dashboard/messages/{message_id}/cancel")
    assert again.status_code == 409
    assert "not pending" in alerts_of(again.text)[0]


def test_a_scheduled_message_keeps_its_time(signed_in: Dashboard, api: httpx.Client) -> None:
    sent = signed_in.send("later", scheduleAt="2099-01-31T12:30")
    message_id = sent.headers["location"].split("/")[-1].split("?")[0]
    assert api.get(f"/messages/{message_id}").json()["scheduleAt"] == "2099-01-31T12:30:00.000Z"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"text": ""}, "Text: String should have at least 1 character"),
        ({"phoneNumbers": ""}, "Recipients: enter at least one phone number"),
        ({"phoneNumbers": "+12025550100\n12"}, "Recipients (number 2): '12' has no country code"),
        ({"simNumber": "4"}, "SIM: Input should be less than or equal to 3"),
        ({"priority": "high"}, "Priority: must be a whole number"),
        ({"scheduleAt": "2001-01-01T00:00"}, "scheduleAt must be in the future"),
        ({"scheduleAt": "tomorrow"}, "Send at: Value error, must be an RFC 3339"),
        ({"deviceId": "nope"}, "Phone: you have no device with id 'nope'"),
    ],
)
def test_bad_send_input_is_shown_on_the_form(
    signed_in: Dashboard, api: httpx.Client, fields: dict[str, str], message: str
) -> None:
    response = signed_in.send(**({"text": "x"} | fields))
    assert response.status_code == 400
    [alert] = alerts_of(response.text)
    assert message.replace("Value error, ", "") in alert.replace("&#39;", "'")
    assert api.get("/messages").json() == []


def test_filters_and_paging_of_the_messages_table(signed_in: Dashboard) -> None:
    for n in range(22):
        signed_in.send(f"m{n}")
    first = signed_in.http.get("/dashboard/messages").text
    assert first.count("data-message-id=") == 20 and "Page 1 of 2" in first
    second = signed_in.http.get("/dashboard/messages?page=2").text
    assert second.count("data-message-id=") == 2 and 'rel="prev"' in second
    assert "0 messages" in signed_in.http.get("/dashboard/messages?state=Delivered").text
    bad = signed_in.http.get("/dashboard/messages?from=yesterday")
    assert bad.status_code == 400
    assert alerts_of(bad.text) == ["From: use a date such as 2026-01-31"]
    assert signed_in.http.get("/dashboard/messages?state=Lost").status_code == 400


def test_nobody_sees_or_cancels_another_users_message(
    server: LiveServer, signed_in: Dashboard
) -> None:
    sent = signed_in.send("for alice only")
    message_id = sent.headers["location"].split("/")[-1].split("?")[0]
    bob = Dashboard(server)
    bob.sign_in(server.create_user("bob"))
    assert bob.http.get(f"/dashboard/messages/{message_id}").status_code == 404
    assert message_id not in bob.http.get("/dashboard/messages").text
    assert bob.post(f"/dashboard/messages/{message_id}/cancel").status_code == 404
    bob.close()


def test_a_one_time_code_adds_a_phone_with_the_settings_shown(
    server: LiveServer, signed_in: Dashboard
) -> None:
    page = signed_in.post("/dashboard/phones/code", page="/dashboard/phones")
    assert page.status_code == 200
    assert f"{server.url}/api/mobile/v1" in page.text and "SSE_ONLY" in page.text
    code = page.text.split('id="one-time-code">')[1].split("<")[0]
    registered = httpx.post(
        f"{server.url}/api/mobile/v1/device",
        json={"name": "Pixel", "simCards": [{"slotIndex": 0, "simNumber": 1}]},
        headers={"Authorization": f"Code {code}"},
        verify=TLS,
    )
    assert registered.status_code == 201
    phones = signed_in.http.get("/dashboard/phones").text
    assert "Pixel" in phones and "Online" in phones and "SIM 1" in phones
    device_id = registered.json()["id"]
    deleted = signed_in.post(f"/dashboard/phones/{device_id}/delete", page="/dashboard/phones")
    assert deleted.status_code == 303
    assert "Pixel" not in signed_in.http.get("/dashboard/phones").text


def test_changing_the_password_changes_the_api_credentials_and_ends_other_sessions(
    server: LiveServer, signed_in: Dashboard, alice: Account
) -> None:
    other = Dashboard(server)
    other.sign_in(alice)
    form = {"current": alice.password, "new": "a brand new secret", "confirm": "a brand new secret"}
    wrong = signed_in.post("/dashboard/account/password", {**form, "current": "nope nope"})
    assert wrong.status_code == 400 and alerts_of(wrong.text) == ["The current password is wrong."]
    short = signed_in.post("/dashboard/account/password", {**form, "new": "x", "confirm": "x"})
    assert short.status_code == 400 and "8 to 128 characters" in alerts_of(short.text)[0]
    assert signed_in.post("/dashboard/account/password", form).status_code == 303
    api = f"{server.api}/messages"
    assert httpx.get(api, auth=(alice.login, "a brand new secret"), verify=TLS).status_code == 200
    assert httpx.get(api, auth=(alice.login, alice.password), verify=TLS).status_code == 401
    assert other.http.get("/dashboard/messages").status_code == 303
    assert signed_in.http.get("/dashboard/messages").status_code == 200
    other.close()


def test_signing_out_revokes_the_session_on_the_server(signed_in: Dashboard) -> None:
    cookie = signed_in.http.cookies["smsgw_session"]
    response = signed_in.post("/dashboard/logout")
    assert response.status_code == 303
    replay = httpx.get(
        str(signed_in.http.base_url) + "/dashboard/messages",
        cookies={"smsgw_session": cookie},
        verify=TLS,
    )
    assert replay.status_code == 303


def test_the_live_stream_announces_a_change(signed_in: Dashboard, server: LiveServer) -> None:
    sent = signed_in.send("watch me")
    message_id = sent.headers["location"].split("/")[-1].split("?")[0]
    token = csrf_of(signed_in.http.get("/dashboard/send").text)
    cookies = {"smsgw_session": signed_in.http.cookies["smsgw_session"]}

    async def scenario() -> list[str]:
        client = httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=10, verify=TLS)
        async with client, client.stream("GET", "/dashboard/live") as stream:
            lines = stream.aiter_lines()
            events = [line async for line in _until(lines, "event: ready")]
            cancel = client.post(f"/dashboard/messages/{message_id}/cancel", data={"csrf": token})
            assert (await cancel).status_code == 303
            events += [line async for line in _until(lines, "event: changed")]
            return events

    events = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert events[-1] == "event: changed"


async def _until(lines: AsyncIterator[str], wanted: str) -> AsyncIterator[str]:
    async for line in lines:
        yield line
        if line == wanted:
            return


def test_a_message_whose_own_id_needs_escaping_opens_and_cancels(
    signed_in: Dashboard, api: httpx.Client
) -> None:
    body = {"id": "order:42;a=b@c", "phoneNumbers": ["+12025550100"], "textMessage": {"text": "a"}}
    assert api.post("/messages", json=body).status_code == 200
    table = signed_in.http.get("/dashboard/messages").text
    link = "/dashboard/messages/order%3A42%3Ba%3Db%40c"
    assert f'href="{link}"' in table
    assert "order:42;a=b@c" in signed_in.http.get(link).text
    cancelled = signed_in.post(f"{link}/cancel", page=link)
    assert cancelled.status_code == 303 and cancelled.headers["location"].startswith(link)
    assert [m["state"] for m in api.get("/messages").json()] == ["Cancelled"]


def test_the_send_form_counts_the_texts_parts_as_the_api_does(
    server: LiveServer, signed_in: Dashboard, api: httpx.Client
) -> None:
    token = signed_in.csrf("/dashboard/send")

    def count(text: str, csrf: str = token) -> httpx.Response:
        return signed_in.http.post("/dashboard/send/parts", data={"csrf": csrf, "text": text})

    assert count("Hello").json() == {"label": "5 characters: 1 SMS part (GSM-7)", "parts": 1}
    assert count("я" * 71).json()["label"] == "71 characters: 2 SMS parts (UCS-2)"
    assert count("€" * 81).json()["parts"] == 2
    assert count("x", csrf="forged").status_code == 403
    too_long = count("x" * 65536)
    assert too_long.status_code == 400 and "65535" in too_long.json()["message"]
    # A text that comes back on the form (here: no recipient) shows its count, without JS.
    refused = signed_in.send("я" * 71, phoneNumbers="")
    assert refused.status_code == 400 and "71 characters: 2 SMS parts (UCS-2)" in refused.text
    # The message's page says how many parts, as the API's partsCount.
    sent = signed_in.send("a" * 161)
    message_id = sent.headers["location"].split("/")[-1].split("?")[0]
    page = signed_in.http.get(f"/dashboard/messages/{message_id}").text
    assert '<dd id="message-parts">2</dd>' in page
    assert api.get(f"/messages/{message_id}").json()["partsCount"] == 2
    signed_out = httpx.post(f"{server.url}/dashboard/send/parts", data={"text": "x"}, verify=TLS)
    assert signed_out.status_code in (303, 401)
