"""The overview in headless Chromium: charts, tables, health and failures at desktop and
phone widths (screenshots in tests/artifacts/screenshots/), with and without JavaScript."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.clients import TLS
from tests.conftest import Account, LiveServer, running
from tests.test_web_overview import DELIVERED, FAILED, HEALTH, NO_SERVICE, SENT, radio
from tests.web_support import DESKTOP, PhoneThread, Problems, chromium, create_user, screenshot
from tests.webhook_support import hub_settings


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    with running(hub_settings(tmp_path / "data")) as live:
        yield live


def open_page(browser: Browser, server: LiveServer, scripts: bool = True) -> Page:
    context = browser.new_context(
        base_url=server.url, viewport=DESKTOP, java_script_enabled=scripts
    )
    context.route(  # nothing may come from beyond smsgw (no CDN)
        "**/*", lambda route: route.continue_() if route.request.url.startswith(server.url)
        else route.abort()
    )  # fmt: skip
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def sign_in(page: Page, account: Account) -> None:
    page.goto("/dashboard")
    page.get_by_label("Login").fill(account.login)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()


def fill(server: LiveServer, account: Account) -> str:
    """A phone that delivered one message, failed one and sent one, and pinged its health;
    then one message queued. The phone's id."""
    device = PhoneThread(server, account, outcome=radio, name="Pixel/alice")
    device.start()
    auth = (account.login, account.password)
    try:
        with httpx.Client(base_url=server.api, auth=auth, timeout=30, verify=TLS) as api:
            ids = []
            for number in (DELIVERED, FAILED, SENT):
                body = {"phoneNumbers": [number], "textMessage": {"text": "for the overview"}}
                ids.append(api.post("/messages", json=body).json()["id"])
            for _ in range(600):
                states = {api.get(f"/messages/{i}").json()["state"] for i in ids}
                if states == {"Delivered", "Failed", "Sent"}:
                    break
                httpx.get(
                    server.url + "/health", verify=TLS
                )  # a moment's wait that asks the server
            assert states == {"Delivered", "Failed", "Sent"}

            async def ping() -> None:
                device.phone.ping(HEALTH)

            device._run(ping())
            for _ in range(600):
                if ("system:ping", 204) in device.phone.webhook_posts:
                    break
                httpx.get(server.url + "/health", verify=TLS)
            assert device.phone.credentials is not None
            phone_id = device.phone.credentials.id
    finally:
        device.stop()
    with httpx.Client(base_url=server.api, auth=auth, timeout=30, verify=TLS) as api:
        body = {"phoneNumbers": [DELIVERED], "textMessage": {"text": "queued"}}
        assert api.post("/messages", json=body).status_code == 200
    return phone_id


def test_the_overview_in_a_browser_at_desktop_and_phone_width(
    browser: Browser, live_server: LiveServer
) -> None:
    alice = create_user(live_server, "alice")
    phone_id = fill(live_server, alice)
    page = open_page(browser, live_server)
    problems = Problems(page)
    sign_in(page, alice)
    expect(page.locator("nav.sections a[aria-current=page]")).to_have_text("Overview")
    expect(page.get_by_role("img", name="Last 24 hours, per hour")).to_be_visible()
    expect(page.get_by_role("img", name="Last 30 days, per day")).to_be_visible()
    expect(page.locator("#rate-24h .figure")).to_have_text("50.0 %")
    expect(page.locator("#queue .figure")).to_have_text("1 Pending")
    row = page.locator(f'tr[data-sender-id="{phone_id}"]')
    expect(row).to_contain_text("Pixel/alice")
    expect(row.locator(".volume")).to_have_text("3 / 3")
    expect(row.locator(".battery")).to_have_text("23 %, charging on USB")
    expect(row.locator(".connection")).to_have_text("online, cellular 4G")
    failure = page.locator("table.failures tbody tr")
    expect(failure).to_have_count(1)
    expect(failure).to_contain_text(NO_SERVICE)
    expect(failure).to_contain_text("Pixel/alice")
    screenshot(page, "overview")
    page.get_by_text("Last 24 hours, per hour as a table").click()
    table = page.locator("#hours-table")
    expect(table).to_be_visible()
    totals = [0, 0, 0]
    for cells in table.locator("tbody tr").all():
        for i, value in enumerate(cells.locator("td").all_inner_texts()):
            totals[i] += int(value)
    assert totals == [1, 1, 1]  # delivered, sent, failed
    screenshot(page, "overview-table")
    failure.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/dashboard/messages/"))
    expect(page.locator("#message-state")).to_have_text("Failed")
    assert problems.errors == []


def test_the_overview_without_javascript_reads_as_tables(
    browser: Browser, live_server: LiveServer
) -> None:
    alice = create_user(live_server, "alice")
    fill(live_server, alice)
    page = open_page(browser, live_server, scripts=False)
    sign_in(page, alice)
    page.get_by_text("Last 30 days, per day as a table").click()
    rows = page.locator("#days-table tbody tr")
    expect(rows).to_have_count(30)
    counted = [[int(v) for v in r.locator("td").all_inner_texts()] for r in rows.all()]
    assert [sum(column) for column in zip(*counted, strict=True)] == [1, 1, 1]
    screenshot(page, "overview-no-script")
