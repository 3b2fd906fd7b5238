"""The dashboard's API tokens and settings pages over plain HTTP (forms without JavaScript):
tokens shown once and working on the API, revocation, CSRF, isolation between users,
settings saved through the API's service, errors named per field, write-only secrets."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.clients import TLS
from tests.conftest import Account, LiveServer
from tests.fakes.phone import SimulatedPhone
from tests.test_phones import MOBILE, _true, eventually, run
from tests.web_support import Dashboard, alerts_of

TOKENS = "/dashboard/tokens"
SETTINGS = "/dashboard/settings"


@pytest.fixture
def web(server: LiveServer, alice: Account) -> Iterator[Dashboard]:
    dashboard = Dashboard(server)
    assert dashboard.sign_in(alice).status_code == 303
    yield dashboard
    dashboard.close()


def shown_token(page: str, field: str) -> str:
    found = re.search(rf'id="{field}"[^>]*>([^<]+)</textarea>', page)
    assert found is not None, f"no {field} on the page"
    return html.unescape(found.group(1))


def issue(web: Dashboard, *chosen: str, ttl: str = "") -> httpx.Response:
    form = {"scope": list(chosen), "ttl": ttl}
    token = web.csrf(TOKENS)
    return web.http.post(TOKENS, data={"csrf": token, **form})


def listed_ids(page: str) -> list[str]:
    return re.findall(r'data-token-id="([^"]+)"', page)


def bearer(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.api, headers={"Authorization": f"Bearer {token}"}, verify=TLS
    )


def test_a_token_is_shown_once_works_with_its_scopes_and_is_revoked(
    web: Dashboard, server: LiveServer
) -> None:
    issued = issue(web, "messages:list", ttl="600")
    assert issued.status_code == 200, alerts_of(issued.text)
    access = shown_token(issued.text, "access-token")
    refresh = shown_token(issued.text, "refresh-token")
    assert "shown only this once" in issued.text
    with bearer(server, access) as client:
        assert client.get("/messages").status_code == 200
        assert client.get("/settings").status_code == 403  # not a scope it was given
    later = web.http.get(TOKENS).text
    [jti] = listed_ids(later)
    assert access not in later and refresh not in later
    assert "messages:list" in later
    revoked = web.post(f"{TOKENS}/{jti}/revoke", page=TOKENS)
    assert revoked.status_code == 303
    after = web.http.get(revoked.headers["location"]).text
    assert listed_ids(after) == [] and "Token revoked" in after
    with bearer(server, access) as client:
        assert client.get("/messages").status_code == 401


def test_a_dashboard_token_is_refreshed_once_on_the_api(web: Dashboard, server: LiveServer) -> None:
    refresh = shown_token(issue(web, "devices:list").text, "refresh-token")
    with bearer(server, refresh) as client:
        assert client.post("/auth/token/refresh").status_code == 201
        assert client.post("/auth/token/refresh").status_code == 401


def test_bad_token_requests_are_named_on_the_form(web: Dashboard) -> None:
    nothing = issue(web)
    assert nothing.status_code == 400
    assert alerts_of(nothing.text) == ["Scopes: give at least one scope"]
    bogus = issue(web, "messages:send", "tokens:refresh")
    assert bogus.status_code == 400
    said = html.unescape(alerts_of(bogus.text)[0])
    assert said.startswith("Scopes: unknown scope 'tokens:refresh'; known scopes: all:any")
    assert 'value="messages:send" checked' in bogus.text  # the choice is kept
    wrong_ttl = issue(web, "messages:send", ttl="soon")
    assert wrong_ttl.status_code == 400
    assert alerts_of(wrong_ttl.text) == ["Lifetime: must be a whole number of seconds"]
    assert listed_ids(web.http.get(TOKENS).text) == []


def test_token_and_settings_forms_need_this_sessions_csrf_token(
    web: Dashboard, server: LiveServer, alice: Account, api: httpx.Client
) -> None:
    access = shown_token(issue(web, "messages:list").text, "access-token")
    [jti] = listed_ids(web.http.get(TOKENS).text)
    other = Dashboard(server)
    other.sign_in(alice)
    foreign = other.csrf(TOKENS)
    forged = [
        (TOKENS, {"scope": "all:any"}),
        (f"{TOKENS}/{jti}/revoke", {}),
        (SETTINGS, {"ping.interval_seconds": "60"}),
    ]
    for path, form in forged:
        for token in ({}, {"csrf": foreign}):
            response = web.http.post(path, data={**form, **token})
            assert response.status_code == 403, path
            assert "expired or came from another site" in alerts_of(response.text)[0]
    assert listed_ids(web.http.get(TOKENS).text) == [jti]
    with bearer(server, access) as client:
        assert client.get("/messages").status_code == 200
    assert api.get("/settings").json() == {}
    other.close()


def test_nobody_sees_or_revokes_another_users_token(web: Dashboard, server: LiveServer) -> None:
    access = shown_token(issue(web, "messages:list").text, "access-token")
    [jti] = listed_ids(web.http.get(TOKENS).text)
    bob = Dashboard(server)
    bob.sign_in(server.create_user("bob"))
    assert listed_ids(bob.http.get(TOKENS).text) == []
    assert jti not in bob.http.get(TOKENS).text
    refused = bob.post(f"{TOKENS}/{jti}/revoke", page=TOKENS)
    assert refused.status_code == 404
    with bearer(server, access) as client:
        assert client.get("/messages").status_code == 200
    bob.close()


def test_tokens_revoked_or_issued_on_the_api_show_on_the_page(
    web: Dashboard, api: httpx.Client
) -> None:
    made = api.post("/auth/token", json={"scopes": ["inbox:list"]}).json()
    assert listed_ids(web.http.get(TOKENS).text) == [made["id"]]
    assert made["access_token"] not in web.http.get(TOKENS).text
    assert api.delete(f"/auth/token/{made['id']}").status_code == 204
    assert listed_ids(web.http.get(TOKENS).text) == []


def settings_form(**values: str) -> dict[str, str]:
    return {name.replace("__", "."): value for name, value in values.items()}


def test_settings_are_saved_through_the_api_service_and_secrets_never_shown(
    web: Dashboard, api: httpx.Client
) -> None:
    form = settings_form(
        messages__limit_period="PerMinute", messages__limit_value="10",
        messages__work_hours_enabled="on", messages__work_hours_start="08:30",
        messages__work_hours_end="18:00", receiver__content_provider_enabled="on",
        webhooks__signing_key="s1gning-s3cret",
    )  # fmt: skip
    saved = web.post(SETTINGS, form, page=SETTINGS)
    assert saved.status_code == 303 and saved.headers["location"].endswith("notice=saved")
    expected = {
        "messages": {
            "limit_period": "PerMinute", "limit_value": 10, "work_hours_enabled": True,
            "work_hours_start": "08:30", "work_hours_end": "18:00",
        },
        "receiver": {"content_provider_enabled": True},
        "webhooks": {},
    }  # fmt: skip
    assert api.get("/settings").json() == expected
    page = web.http.get(SETTINGS).text
    assert "s1gning-s3cret" not in page and "encryption.passphrase" not in page
    assert 'value="PerMinute" selected' in page and 'value="08:30"' in page
    assert re.search(r'id="messages-work_hours_enabled" name="[^"]+" checked', page)


def test_wrong_settings_are_named_per_field_and_nothing_is_saved(
    web: Dashboard, api: httpx.Client
) -> None:
    form = settings_form(
        messages__limit_value="0", messages__work_hours_start="25:00",
        ping__interval_seconds="often", messages__send_interval_min="9",
    )  # fmt: skip
    refused = web.post(SETTINGS, form, page=SETTINGS)
    assert refused.status_code == 400
    assert "Ping the server every (s): must be a whole number" in refused.text
    assert 'id="ping-interval_seconds" name="ping.interval_seconds"' in refused.text
    assert 'value="often"' in refused.text  # what was typed is kept
    fixed = settings_form(messages__limit_value="0", messages__work_hours_start="25:00")
    named = web.post(SETTINGS, fixed, page=SETTINGS)
    assert named.status_code == 400
    errors = re.findall(r'class="field-error" id="err-([\w-]+)">([^<]+)<', named.text)
    assert dict(errors) == {
        "messages-limit_value": "Messages per limit period: must be between 1 and 2147483647",
        "messages-work_hours_start": "Work hours start (HH:mm, 24-hour): "
        "must be a time of day as HH:mm (24-hour)",
    }
    assert 'aria-describedby="err-messages-limit_value"' in named.text
    assert api.get("/settings").json() == {}


def test_a_save_sends_only_what_changed_and_secrets_are_set_or_cleared(
    server: LiveServer, web: Dashboard, alice: Account, api: httpx.Client
) -> None:
    api.patch("/settings", json={"ping": {"interval_seconds": 60}, "webhooks": {"retry_count": 3}})

    async def scenario() -> None:
        phone = SimulatedPhone(server.url + MOBILE, login=(alice.login, alice.password))
        await phone.start()
        await eventually(lambda: _true(phone.settings.get("ping") == {"interval_seconds": 60}))
        told = sum(1 for name, _ in phone.events if name == "SettingsUpdated")
        shown = {"ping.interval_seconds": "60", "webhooks.retry_count": "3"}
        same = await asyncio.to_thread(web.post, SETTINGS, shown, SETTINGS)
        assert same.headers["location"].endswith("notice=unchanged")
        key = {**shown, "webhooks.signing_key": "k3y", "ping.interval_seconds": ""}
        assert (await asyncio.to_thread(web.post, SETTINGS, key, SETTINGS)).status_code == 303
        await eventually(
            lambda: _true(phone.settings.get("webhooks", {}).get("signing_key") == "k3y")
        )
        # Emptied: sent as null, which the app takes as "back to the app's default".
        assert phone.settings["ping"] == {"interval_seconds": None}
        assert sum(1 for name, _ in phone.events if name == "SettingsUpdated") == told + 1
        clear = {"webhooks.retry_count": "3", "webhooks.signing_key.clear": "on"}
        assert (await asyncio.to_thread(web.post, SETTINGS, clear, SETTINGS)).status_code == 303
        cleared = {"retry_count": 3, "signing_key": None}
        await eventually(lambda: _true(phone.settings.get("webhooks") == cleared))
        await phone.stop()

    run(scenario)
    assert api.get("/settings").json()["webhooks"] == {"retry_count": 3}


def test_settings_belong_to_their_owner(web: Dashboard, server: LiveServer) -> None:
    assert web.post(SETTINGS, {"logs.lifetime_days": "5"}, page=SETTINGS).status_code == 303
    bob = Dashboard(server)
    bob.sign_in(server.create_user("bob"))
    assert 'name="logs.lifetime_days" type="number" min="1" max="2147483647" step="1" value=""' in (
        bob.http.get(SETTINGS).text
    )
    with server.client(Account("bob", "correct horse battery")) as api:
        assert api.get("/settings").json() == {}
    bob.close()
