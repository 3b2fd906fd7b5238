"""The routing rule on the dashboard's carrier links page (web/routing_form.py), through a real
running smsgw with plain HTTP forms: each mode set on the page is the rule `GET /links/routing`
and `smsgw links routing` show; every refused value named on its field with what was typed
kept; the session's CSRF token required; the signed-in account's rule only."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from smsgw.cli import app
from tests.clients import TLS
from tests.conftest import Account, LiveServer
from tests.test_cli import environment
from tests.web_support import Dashboard, alerts_of

PAGE = "/dashboard/links"
ROUTE = PAGE + "/routing"
SHARED = {"mode": "shared", "prefixes": [], "failoverAfter": 0}


@pytest.fixture
def dashboard(server: LiveServer, alice: Account) -> Iterator[Dashboard]:
    signed_in = Dashboard(server)
    assert signed_in.sign_in(alice).status_code == 303
    yield signed_in
    signed_in.close()


def save(dashboard: Dashboard, mode: str, prefixes: str = "", failover: str = "") -> httpx.Response:
    typed = {"mode": mode, "prefixes": prefixes, "failover_after": failover}
    return dashboard.post(ROUTE, typed, page=PAGE)


def rule_of(api: httpx.Client) -> dict[str, Any]:
    response = api.get("/links/routing")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def cli_says(server: LiveServer, login: str) -> str:
    args = ["links", "routing", "--user", login]
    result = CliRunner().invoke(app, args, env=environment(server.settings.data_dir))
    assert result.exit_code == 0, result.output
    return result.output.strip()


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def rule_in_words(page: str) -> str:
    found = re.search(r'id="routing-rule">(.*?)</p>', page, re.S)
    assert found is not None, "no rule in words on the page"
    return text_of(found.group(1))


def field_errors(page: str) -> dict[str, str]:
    found = re.findall(r'<p class="field-error" id="(r-[^"]+)-error">([^<]+)</p>', page)
    return {name: html.unescape(text) for name, text in found}


def value_of(page: str, name: str) -> str:
    found = re.search(rf'<input id="[^"]+" name="{name}" type="text" value="([^"]*)"', page)
    assert found is not None, f"no field {name}"
    return html.unescape(found.group(1))


def checked_mode(page: str) -> list[str]:
    return re.findall(r'name="mode" value="(\w+)" checked', page)


#: (typed mode, prefixes, failover) -> the rule the API shows, the CLI's line, the page's words
MODES = [
    (("phones", "", "30"), {"mode": "phones", "prefixes": [], "failoverAfter": 30},
     "mode phones, failover after 30 s",
     "Phones: your phones take every queued message; your links take the messages still "
     "queued 30 s after they were due."),
    (("links", "", ""), {"mode": "links", "prefixes": [], "failoverAfter": 0},
     "mode links",
     "Links: your links take every queued message; your phones take none."),
    (("prefix", " +44,+4915  +44 ,, +1 ", "60"),
     {"mode": "prefix", "prefixes": ["+44", "+4915", "+1"], "failoverAfter": 60},
     "mode prefix, prefixes +44 +4915 +1, failover after 60 s",
     "Prefix: your links take the messages whose recipients all start with +44, +4915 or +1; "
     "your phones take the others; either kind also takes the other's messages still queued "
     "60 s after they were due."),
    (("fallback", "+44", ""), {"mode": "fallback", "prefixes": [], "failoverAfter": 0},
     "mode fallback",
     "Fallback: your phones take every queued message; your links take them too, but only "
     "while no phone of yours is online."),
    (("shared", "", ""), SHARED, "mode shared",
     "Shared (the default): your phones and your links take every queued message, whoever "
     "claims first."),
]  # fmt: skip


def test_each_mode_set_on_the_page_is_the_rule_the_api_and_the_cli_show(
    server: LiveServer, dashboard: Dashboard, api: httpx.Client
) -> None:
    first = dashboard.http.get(PAGE).text
    assert rule_in_words(first) == MODES[-1][3]  # never set: shared
    assert checked_mode(first) == ["shared"]
    assert 'action="/dashboard/links/routing"' in first
    for typed, wire, line, words in MODES:
        saved = save(dashboard, *typed)
        assert (saved.status_code, saved.headers["location"]) == (303, PAGE + "?notice=routed")
        assert rule_of(api) == wire
        assert cli_says(server, "alice") == f"alice: {line}"
        page = dashboard.http.get(saved.headers["location"]).text
        assert "Routing rule saved" in page
        assert rule_in_words(page) == words
        assert checked_mode(page) == [wire["mode"]]
        assert value_of(page, "prefixes") == ", ".join(wire["prefixes"])
        assert value_of(page, "failover_after") == (str(wire["failoverAfter"] or ""))


PREFIX_ERRORS = [
    ("", "Prefixes: mode prefix needs at least one prefix, such as +44"),
    ("+44, 4915", "Prefixes: 4915 must be + and 1 to 15 digits, such as +44"),
    ("+44 +4x9", "Prefixes: +4x9 must be + and 1 to 15 digits, such as +44"),
    ("+1234567890123456", "Prefixes: +1234567890123456 must be + and 1 to 15 digits, such as +44"),
    (" ".join(f"+{n}" for n in range(101)), "Prefixes: at most 100"),
]


@pytest.mark.parametrize(("prefixes", "message"), PREFIX_ERRORS)
def test_a_bad_prefix_is_named_on_its_field_with_the_typed_values_kept(
    dashboard: Dashboard, api: httpx.Client, prefixes: str, message: str
) -> None:
    refused = save(dashboard, "prefix", prefixes, "30")
    assert refused.status_code == 400
    assert alerts_of(refused.text) == ["The routing rule was not saved: 1 field to correct below."]
    assert field_errors(refused.text) == {"r-prefixes": message}
    assert 'aria-describedby="r-prefixes-help r-prefixes-error" aria-invalid="true"' in refused.text
    assert value_of(refused.text, "prefixes") == prefixes
    assert value_of(refused.text, "failover_after") == "30"
    assert checked_mode(refused.text) == ["prefix"]
    assert rule_in_words(refused.text).startswith("Shared (the default)")  # still the rule
    assert rule_of(api) == SHARED


@pytest.mark.parametrize(
    ("mode", "failover", "message"),
    [
        ("phones", "-5", "must be from 0 to 604800 seconds"),
        ("links", "abc", "must be a whole number of seconds"),
        ("fallback", "1.5", "must be a whole number of seconds"),
        ("phones", "604801", "must be from 0 to 604800 seconds"),
        ("phones", "9" * 30, "must be from 0 to 604800 seconds"),
        ("shared", "30", "in mode shared phones and links take every message at once; "
         "for links after N seconds, use mode phones"),
    ],
)  # fmt: skip
def test_a_bad_failover_is_named_on_its_field_with_the_typed_values_kept(
    dashboard: Dashboard, api: httpx.Client, mode: str, failover: str, message: str
) -> None:
    refused = save(dashboard, mode, "", failover)
    assert refused.status_code == 400
    assert field_errors(refused.text) == {"r-failover": f"Failover after (seconds): {message}"}
    assert value_of(refused.text, "failover_after") == failover
    assert checked_mode(refused.text) == [mode]
    assert rule_of(api) == SHARED


def test_every_bad_field_is_named_at_once(dashboard: Dashboard, api: httpx.Client) -> None:
    assert save(dashboard, "phones", "", "30").status_code == 303
    refused = save(dashboard, "prefix", "+44, x", "-1")
    assert refused.status_code == 400
    assert alerts_of(refused.text) == ["The routing rule was not saved: 2 fields to correct below."]
    assert field_errors(refused.text) == {
        "r-prefixes": "Prefixes: x must be + and 1 to 15 digits, such as +44",
        "r-failover": "Failover after (seconds): must be from 0 to 604800 seconds",
    }
    unknown = save(dashboard, "carrier", "", "often")
    assert field_errors(unknown.text) == {
        "r-mode": "Mode: must be one of shared, phones, links, prefix, fallback",
        "r-failover": "Failover after (seconds): must be a whole number of seconds",
    }
    assert checked_mode(unknown.text) == []
    assert rule_of(api) == {"mode": "phones", "prefixes": [], "failoverAfter": 30}


def test_the_form_needs_this_sessions_csrf_token_and_a_session(
    server: LiveServer, dashboard: Dashboard, alice: Account, api: httpx.Client
) -> None:
    typed = {"mode": "links", "prefixes": "", "failover_after": ""}
    missing = dashboard.http.post(ROUTE, data=typed)
    assert missing.status_code == 403 and "This form has expired" in missing.text
    assert dashboard.http.post(ROUTE, data={**typed, "csrf": "forged"}).status_code == 403
    other = Dashboard(server)
    try:
        assert other.sign_in(alice).status_code == 303
        foreign = other.csrf(PAGE)  # alice's other session: not this form's token
    finally:
        other.close()
    assert dashboard.http.post(ROUTE, data={**typed, "csrf": foreign}).status_code == 403
    with httpx.Client(base_url=server.url, timeout=30, verify=TLS) as anonymous:
        refused = anonymous.post(ROUTE, data={**typed, "csrf": foreign})
        assert refused.status_code == 303
        assert refused.headers["location"].startswith("/dashboard/login")
    assert rule_of(api) == SHARED


def test_the_page_reads_and_sets_the_signed_in_accounts_rule_only(
    server: LiveServer, dashboard: Dashboard, api: httpx.Client
) -> None:
    bob = server.create_user("bob")
    with server.client(bob) as bob_api:
        bobs = {"mode": "prefix", "prefixes": ["+33"], "failoverAfter": 10}
        assert bob_api.put("/links/routing", json=bobs).status_code == 200
        page = dashboard.http.get(PAGE).text
        assert rule_in_words(page).startswith("Shared (the default)")
        assert value_of(page, "prefixes") == "" and "+33" not in page

        assert save(dashboard, "links", "", "20").status_code == 303
        assert rule_of(api) == {"mode": "links", "prefixes": [], "failoverAfter": 20}
        assert rule_of(bob_api) == bobs
    assert cli_says(server, "bob") == "bob: mode prefix, prefixes +33, failover after 10 s"
