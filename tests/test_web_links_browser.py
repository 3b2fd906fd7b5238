"""The carrier links page in headless Chromium with JavaScript off (the page needs none):
add a link through the form (an error named on its field first), see it bound to the SMSC
simulator and send through it, delete it; at desktop and phone widths (screenshots in
tests/artifacts/screenshots/). With JavaScript on, the page follows the link live."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.clients import TLS
from tests.conftest import Account, LiveServer, running
from tests.fakes.smsc import PASSWORD, USER, Smsc, wait_until
from tests.web_support import DESKTOP, Problems, chromium, create_user, screenshot
from tests.webhook_support import hub_settings


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with running(hub_settings(tmp_path / "data", link_connect_timeout_seconds=2)) as server:
        yield server


@pytest.fixture
def page(browser: Browser, live: LiveServer) -> Iterator[Page]:
    context = browser.new_context(base_url=live.url, viewport=DESKTOP, java_script_enabled=False)
    context.route(  # nothing may come from beyond smsgw (no CDN)
        "**/*", lambda route: route.continue_() if route.request.url.startswith(live.url)
        else route.abort()
    )  # fmt: skip
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def sign_in(page: Page, account: Account) -> None:
    page.goto("/dashboard")
    page.get_by_label("Login").fill(account.login)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()


def fill(page: Page, port: str, password: str) -> None:
    page.get_by_label("Name").fill("Carrier A")
    page.get_by_label("Host").fill("127.0.0.1")
    page.get_by_label("Port").fill(port)
    page.get_by_label("System ID").fill(USER)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Source address").fill("SMSGW")
    page.get_by_label("Throughput (per second)").fill("50")
    page.get_by_role("button", name="Add the link").click()


def test_add_a_link_see_it_bound_and_sending_then_delete_it(
    page: Page, live: LiveServer, smsc: Smsc
) -> None:
    problems = Problems(page)
    alice = create_user(live, "alice")
    sign_in(page, alice)
    page.get_by_role("link", name="Carrier links").click()
    expect(page.get_by_role("heading", name="Carrier links")).to_be_visible()
    expect(page.get_by_text("You have no carrier link.")).to_be_visible()

    fill(page, "not a port", PASSWORD)
    expect(page.locator(".field-error")).to_have_text(["Port: a whole number from 1 to 65535"])
    expect(page.get_by_label("Port")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Password")).to_have_value("")  # never echoed back
    expect(page.get_by_label("System ID")).to_have_value(USER)
    screenshot(page, "links-errors")

    page.get_by_label("Port").fill(str(smsc.port))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Add the link").click()
    expect(page.get_by_role("status")).to_contain_text("Link added")
    with httpx.Client(base_url=live.api, auth=(alice.login, alice.password), verify=TLS) as api:
        wait_until(lambda: api.get("/links").json()[0]["state"] == "bound", what="bound")
        body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "Hello"}}
        message_id = api.post("/messages", json=body).json()["id"]
        wait_until(
            lambda: api.get(f"/messages/{message_id}").json()["state"] == "Delivered",
            what="delivered",
        )
        wait_until(lambda: api.get("/links").json()[0]["recent"]["delivered"] == 1, what="1")
    page.reload()
    row = page.locator("table.links tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator(".session")).to_contain_text("bound")
    expect(row.locator(".smsc")).to_contain_text(f"127.0.0.1:{smsc.port}")
    expect(row.locator(".queue")).to_have_text("0 waiting, 0 planned, 0 in flight")
    expect(row.locator(".recent")).to_contain_text("1 submitted; receipts: 1 delivered")
    assert PASSWORD not in page.content()
    screenshot(page, "links")

    row.get_by_role("button", name="Delete link Carrier A").click()
    expect(page.get_by_role("status")).to_contain_text("Link deleted.")
    expect(page.locator("table.links")).to_have_count(0)
    assert [e for e in problems.errors if "status of 400" not in e] == []  # the refused form


def test_set_the_routing_rule_to_prefix_and_read_it_in_words(page: Page, live: LiveServer) -> None:
    problems = Problems(page)
    sign_in(page, create_user(live, "alice"))
    page.goto("/dashboard/links")
    rule = page.locator("#routing-rule")
    expect(rule).to_contain_text("Shared (the default)")
    expect(page.get_by_label("Prefixes")).to_be_hidden()  # CSS only: used in mode prefix alone

    page.get_by_label("prefix", exact=True).check()
    page.get_by_label("Prefixes").fill("+44, +4915")
    page.get_by_label("Failover after (seconds)").fill("30")
    page.get_by_role("button", name="Save the routing rule").click()
    expect(page.get_by_role("status")).to_contain_text("Routing rule saved")
    expect(rule).to_have_text(
        "Prefix: your links take the messages whose recipients all start with +44 or +4915; "
        "your phones take the others; either kind also takes the other's messages still "
        "queued 30 s after they were due."
    )
    expect(page.get_by_label("prefix", exact=True)).to_be_checked()
    expect(page.get_by_label("Prefixes")).to_have_value("+44, +4915")
    screenshot(page, "links-routing")
    assert problems.errors == []


def test_with_javascript_the_page_follows_the_link_live(
    browser: Browser, live: LiveServer, smsc: Smsc
) -> None:
    """The page open, never reloaded: a link added through the API shows, then bound once
    the server binds it, and its parts sent and delivered show as they happen."""
    context = browser.new_context(base_url=live.url, viewport=DESKTOP)
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        problems = Problems(page)
        alice = create_user(live, "alice")
        sign_in(page, alice)
        page.goto("/dashboard/links")
        expect(page.locator("html[data-live-ready]")).to_have_count(1, timeout=30_000)
        expect(page.get_by_text("You have no carrier link.")).to_be_visible()

        with httpx.Client(base_url=live.api, auth=(alice.login, alice.password), verify=TLS) as api:
            settings = {"host": "127.0.0.1", "port": smsc.port, "systemId": USER,
                        "password": PASSWORD}  # fmt: skip
            added = api.post("/links", json=settings)
            assert added.status_code == 201, added.text
            link_id = added.json()["id"]
            row = page.locator(f'tr[data-link-id="{link_id}"]')
            # the bind's notice (generous: a busy machine binds late)
            expect(row.locator(".session")).to_contain_text("bound", timeout=30_000)
            body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "Hello"}}
            assert api.post("/messages", json=body).status_code == 200
        expect(row.locator(".recent")).to_contain_text(
            "1 submitted; receipts: 1 delivered", timeout=30_000
        )
        assert problems.errors == []
    finally:
        context.close()
