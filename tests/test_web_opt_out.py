"""The dashboard's opt-out page: over plain HTTP (forms without JavaScript: add, remove, errors
on the field, CSRF, another user's list) and in headless Chromium."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.clients import TLS
from tests.conftest import Account, LiveServer, make_settings, running
from tests.web_support import (
    DESKTOP,
    Dashboard,
    Problems,
    alerts_of,
    chromium,
    create_user,
    screenshot,
)

PAGE = "/dashboard/opt-outs"


@pytest.fixture
def region_server(tmp_path: Path) -> Iterator[LiveServer]:
    with running(make_settings(tmp_path / "data", default_region="US")) as live:
        yield live


@pytest.fixture
def owner(region_server: LiveServer) -> Account:
    return region_server.create_user("owner")


@pytest.fixture
def web(region_server: LiveServer, owner: Account) -> Iterator[Dashboard]:
    dashboard = Dashboard(region_server)
    assert dashboard.sign_in(owner).status_code == 303
    yield dashboard
    dashboard.close()


def listed(page: str) -> list[str]:
    return [html.unescape(n) for n in re.findall(r'data-opt-out="([^"]+)"', page)]


def field_errors(page: str) -> list[str]:
    return [html.unescape(e) for e in re.findall(r'class="field-error"[^>]*>([^<]+)<', page)]


def test_a_number_is_added_listed_used_and_removed(
    region_server: LiveServer, owner: Account, web: Dashboard
) -> None:
    page = web.http.get(PAGE)
    assert page.status_code == 200 and "No number has opted out." in page.text
    assert "<code>STOP</code>" in page.text and "<code>UNSTOP</code>" in page.text
    added = web.post(PAGE, {"phoneNumber": "(202) 555-0100"}, page=PAGE)
    assert added.status_code == 303 and added.headers["location"] == f"{PAGE}?notice=added"
    shown = web.http.get(added.headers["location"]).text
    assert listed(shown) == ["+12025550100"] and "added here" in shown
    again = web.post(PAGE, {"phoneNumber": "+1 202 555 0100"}, page=PAGE)
    assert again.headers["location"] == f"{PAGE}?notice=listed"
    with region_server.client(owner) as api:
        [entry] = api.get("/opt-outs").json()
        assert entry["source"] == "dashboard"
        body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "x"}}
        assert api.post("/messages", json=body).json()["recipients"][0]["error"] == (
            "recipient opted out"
        )
    removed = web.post(f"{PAGE}/remove", {"phoneNumber": "+12025550100"}, page=PAGE)
    assert removed.headers["location"] == f"{PAGE}?notice=removed"
    assert listed(web.http.get(PAGE).text) == []
    gone = web.post(f"{PAGE}/remove", {"phoneNumber": "+12025550100"}, page=PAGE)
    assert gone.status_code == 404
    assert alerts_of(gone.text) == ["phone number not on the opt-out list"]


@pytest.mark.parametrize(
    ("number", "said"),
    [
        ("", "enter a phone number"),
        ("hello", "'hello' is not a phone number"),
        ("+1 202 555 01", "'+1 202 555 01' is not a valid phone number"),
    ],
)
def test_a_bad_number_is_named_on_the_form(web: Dashboard, number: str, said: str) -> None:
    answer = web.post(PAGE, {"phoneNumber": number}, page=PAGE)
    assert answer.status_code == 400
    [error] = field_errors(answer.text)
    assert said in error and 'aria-invalid="true"' in answer.text
    assert f'value="{html.escape(number)}"' in answer.text  # kept to correct it


def test_the_forms_refuse_a_missing_or_foreign_csrf_token(
    region_server: LiveServer, web: Dashboard
) -> None:
    for path in (PAGE, f"{PAGE}/remove"):
        refused = web.http.post(path, data={"phoneNumber": "+12025550100"})
        assert refused.status_code == 403
        foreign = web.http.post(path, data={"csrf": "x" * 43, "phoneNumber": "+12025550100"})
        assert foreign.status_code == 403
    assert listed(web.http.get(PAGE).text) == []


def test_another_users_list_is_neither_shown_nor_changed(
    region_server: LiveServer, web: Dashboard
) -> None:
    bob = region_server.create_user("bob")
    with region_server.client(bob) as api:
        assert api.post("/opt-outs", json={"phoneNumber": "+12025550111"}).status_code == 201
    assert listed(web.http.get(PAGE).text) == []
    refused = web.post(f"{PAGE}/remove", {"phoneNumber": "+12025550111"}, page=PAGE)
    assert refused.status_code == 404
    with region_server.client(bob) as api:
        assert len(api.get("/opt-outs").json()) == 1


def test_long_lists_are_paged(region_server: LiveServer, owner: Account, web: Dashboard) -> None:
    with region_server.client(owner) as api:
        for n in range(55):
            assert api.post("/opt-outs", json={"phoneNumber": f"+120255501{n:02d}"}).is_success
    first = web.http.get(PAGE).text
    assert len(listed(first)) == 50 and "Page 1 of 2" in first and 'rel="next"' in first
    second = web.http.get(PAGE, params={"page": "2"}).text
    assert len(listed(second)) == 5 and set(listed(first)).isdisjoint(listed(second))
    assert web.http.get(PAGE, params={"page": "x"}).status_code == 400


def test_signed_out_visitors_are_sent_to_sign_in(region_server: LiveServer) -> None:
    with httpx.Client(base_url=region_server.url, verify=TLS) as anonymous:
        answer = anonymous.get(PAGE)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/dashboard/login")


# --- In Chromium ------------------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[Browser]:
    """For this test only: Playwright's sync API keeps an event loop on the test's thread
    while it lives, where the other tests' `create_user` runs one of its own."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, region_server: LiveServer) -> Iterator[Page]:
    context = browser.new_context(base_url=region_server.url, viewport=DESKTOP)
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def test_add_see_and_remove_a_number_in_the_browser(page: Page, region_server: LiveServer) -> None:
    problems = Problems(page)
    alice = create_user(region_server, "alice")
    page.goto("/dashboard")
    page.get_by_label("Login").fill(alice.login)
    page.get_by_label("Password").fill(alice.password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Opt-outs").click()
    expect(page.get_by_text("No number has opted out.")).to_be_visible()
    page.get_by_label("Phone number").fill("not a number")
    page.get_by_role("button", name="Add to the opt-out list").click()
    expect(page.locator(".field-error")).to_contain_text("is not a phone number")
    expect(page.get_by_label("Phone number")).to_have_value("not a number")
    screenshot(page, "opt-outs-errors")
    page.get_by_label("Phone number").fill("202 555 0100")
    page.get_by_role("button", name="Add to the opt-out list").click()
    expect(page.get_by_role("status")).to_contain_text("Number added")
    row = page.locator("table.opt-outs tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("+12025550100")
    expect(row).to_contain_text("added here")
    screenshot(page, "opt-outs")
    page.get_by_role("button", name="Remove +12025550100").click()
    expect(page.get_by_role("status")).to_contain_text("Number removed")
    expect(page.locator("table.opt-outs")).to_have_count(0)
    assert [e for e in problems.errors if "status of 400" not in e] == []
