"""The dashboard's API keys page over plain HTTP (forms without JavaScript): a key shown once
and working on the API with its scopes, listed with its times and state, revoked; errors
named on the form; CSRF; isolation between users."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.clients import TLS
from tests.conftest import Account, LiveServer
from tests.web_support import Dashboard, alerts_of

KEYS = "/dashboard/keys"


@pytest.fixture
def web(server: LiveServer, alice: Account) -> Iterator[Dashboard]:
    dashboard = Dashboard(server)
    assert dashboard.sign_in(alice).status_code == 303
    yield dashboard
    dashboard.close()


def create(web: Dashboard, name: str, *chosen: str, days: str = "") -> httpx.Response:
    form = {"name": name, "scope": list(chosen), "days": days}
    return web.http.post(KEYS, data={"csrf": web.csrf(KEYS), **form})


def shown_key(page: str) -> str:
    found = re.search(r'id="api-key"[^>]*>([^<]+)</textarea>', page)
    assert found is not None, "no key on the page"
    return html.unescape(found.group(1))


def rows(page: str) -> dict[str, str]:
    """Each listed key's row (its HTML), by id."""
    found = re.findall(r'<tr data-key-id="([^"]+)">(.*?)</tr>', page, re.DOTALL)
    return dict(found)


def bearer(server: LiveServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.api, headers={"Authorization": f"Bearer {key}"}, verify=TLS)


def test_a_key_is_shown_once_works_with_its_scopes_is_listed_and_revoked(
    web: Dashboard, server: LiveServer
) -> None:
    created = create(web, "billing app", "messages:list", days="30")
    assert created.status_code == 200, alerts_of(created.text)
    key = shown_key(created.text)
    assert "shown only this once" in created.text and "billing app" in created.text
    with bearer(server, key) as client:
        assert client.get("/messages").status_code == 200
        assert client.get("/settings").status_code == 403  # not a scope it was given
    later = web.http.get(KEYS).text
    assert key not in later
    [(key_id, row)] = rows(later).items()
    assert key.startswith(f"smsgw_{key_id}_")
    assert "billing app" in row and "messages:list" in row and ">live<" in row
    assert "never" not in row  # used once, and it expires
    revoked = web.post(f"{KEYS}/{key_id}/revoke", page=KEYS)
    assert revoked.status_code == 303
    after = web.http.get(revoked.headers["location"]).text
    assert "API key revoked" in after
    assert ">revoked<" in rows(after)[key_id] and "/revoke" not in rows(after)[key_id]
    with bearer(server, key) as client:
        assert client.get("/messages").status_code == 401


def test_a_new_key_never_used_and_without_expiry_says_never(web: Dashboard) -> None:
    assert create(web, "idle", "inbox:list").status_code == 200
    [row] = rows(web.http.get(KEYS).text).values()
    assert row.count("never") == 2


def test_bad_key_requests_are_named_on_the_form_and_keep_the_choices(web: Dashboard) -> None:
    nothing = create(web, "app")
    assert nothing.status_code == 400
    assert alerts_of(nothing.text) == ["Scopes: give at least one scope"]
    unnamed = create(web, "   ", "messages:send")
    assert unnamed.status_code == 400
    assert alerts_of(unnamed.text) == ["Name: give 1 to 100 characters"]
    assert 'value="messages:send" checked' in unnamed.text
    wrong_days = create(web, "app", "messages:send", days="soon")
    assert wrong_days.status_code == 400
    assert alerts_of(wrong_days.text) == ["Expires in days: give a whole number from 1 to 36500"]
    assert 'value="app"' in wrong_days.text
    assert create(web, "app", "messages:send").status_code == 200
    twice = create(web, "app", "messages:send")
    assert twice.status_code == 409
    said = html.unescape(alerts_of(twice.text)[0])
    assert said == "Name: you already have an API key named 'app'; choose another or revoke it"
    assert len(rows(web.http.get(KEYS).text)) == 1


def test_key_forms_need_this_sessions_csrf_token(
    web: Dashboard, server: LiveServer, alice: Account
) -> None:
    key = shown_key(create(web, "kept", "messages:list").text)
    [key_id] = rows(web.http.get(KEYS).text)
    other = Dashboard(server)
    other.sign_in(alice)
    foreign = other.csrf(KEYS)
    forged = [(KEYS, {"name": "forged", "scope": "all:any"}), (f"{KEYS}/{key_id}/revoke", {})]
    for path, form in forged:
        for token in ({}, {"csrf": foreign}):
            response = web.http.post(path, data={**form, **token})
            assert response.status_code == 403, path
            assert "expired or came from another site" in alerts_of(response.text)[0]
    assert list(rows(web.http.get(KEYS).text)) == [key_id]
    with bearer(server, key) as client:
        assert client.get("/messages").status_code == 200
    other.close()


def test_nobody_sees_or_revokes_another_users_key(web: Dashboard, server: LiveServer) -> None:
    key = shown_key(create(web, "mine", "messages:list").text)
    [key_id] = rows(web.http.get(KEYS).text)
    bob = Dashboard(server)
    bob.sign_in(server.create_user("bob"))
    assert rows(bob.http.get(KEYS).text) == {} and key_id not in bob.http.get(KEYS).text
    refused = bob.post(f"{KEYS}/{key_id}/revoke", page=KEYS)
    assert refused.status_code == 404
    with bearer(server, key) as client:
        assert client.get("/messages").status_code == 200
    bob.close()


def test_keys_created_or_revoked_on_the_api_show_on_the_page(
    web: Dashboard, api: httpx.Client
) -> None:
    made = api.post("/auth/keys", json={"name": "from the api", "scopes": ["inbox:list"]})
    assert made.status_code == 201
    key_id = made.json()["id"]
    assert ">live<" in rows(web.http.get(KEYS).text)[key_id]
    assert api.delete(f"/auth/keys/{key_id}").status_code == 204
    assert ">revoked<" in rows(web.http.get(KEYS).text)[key_id]
