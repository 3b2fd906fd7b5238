"""Conversations in real headless Chromium at desktop and phone width: the list, search, a
thread with a reply (and a refused one), the CSV download, and the messages list fitting a
390 px screen; screenshots in tests/artifacts/screenshots/."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from smsgw.conversations.export import MESSAGE_COLUMNS
from tests.clients import TLS
from tests.conftest import Account, LiveServer, make_settings, running
from tests.test_web_browser import sign_in
from tests.web_support import DESKTOP, PHONE, Problems, chromium, create_user, screenshot

LONG = "https://example.com/" + "a-very-long-path-without-spaces-" * 4 + " and some words after"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path / "data", mode="development", default_region="US",
        worker_interval_seconds=0.2, web_live_keepalive_seconds=1,
    )  # fmt: skip
    with running(settings) as live:
        yield live


@pytest.fixture
def page(browser: Browser, live_server: LiveServer) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP, accept_downloads=True)
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def add_virtual_phone(page: Page) -> None:
    page.goto("/dashboard/phones")
    page.get_by_label("Name").fill("Pocket")
    page.get_by_label("Delay (seconds)").fill("0")
    page.get_by_label("Outcome").fill("delivered")
    page.get_by_role("button", name="Add a virtual phone").click()
    expect(page.get_by_role("status")).to_contain_text("Virtual phone added")


def receive(page: Page, sender: str, text: str) -> None:
    page.goto("/dashboard/phones")
    page.get_by_label("From").fill(sender)
    page.get_by_label("Text").fill(text)
    page.get_by_role("button", name="Receive this SMS").click()
    expect(page.get_by_role("status")).to_contain_text("received the SMS")


def send(server: LiveServer, account: Account, text: str, *numbers: str) -> None:
    body = {"phoneNumbers": list(numbers), "textMessage": {"text": text}}
    answer = httpx.post(
        server.api + "/messages", json=body, auth=(account.login, account.password), verify=TLS
    )
    assert answer.status_code == 200, answer.text


def fits(page: Page, selector: str) -> None:
    """At phone width, `selector` needs no scrolling inside its box either."""
    page.set_viewport_size(PHONE)
    sizes = page.eval_on_selector(selector, "e => [e.scrollWidth, e.clientWidth]")
    assert sizes[0] <= sizes[1], f"{selector} scrolls sideways inside its box: {sizes}"
    page.set_viewport_size(DESKTOP)


def test_talk_with_a_number_search_export_and_read_it_on_a_phone_screen(
    page: Page, live_server: LiveServer
) -> None:
    problems = Problems(page)
    alice = create_user(live_server, "alice")
    sign_in(page, alice)
    add_virtual_phone(page)
    send(live_server, alice, "Your table for two is booked for 8 pm.", "+12025550100")
    receive(page, "+12025550100", "Thanks! Can we make it 9?")
    send(live_server, alice, LONG, "+12025550100", "+12025550199")
    receive(page, "+12025550123", "STOPPING BY LATER")

    page.get_by_role("link", name="Conversations").click()
    rows = page.locator("table.conversations tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("+12025550123")
    screenshot(page, "conversations")
    fits(page, "div.scroll:has(table.conversations)")

    page.get_by_label("Search by number or text").fill("make it 9")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Thanks! Can we make it 9?")
    screenshot(page, "conversations-search")

    rows.first.get_by_role("link", name="+12025550100").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Conversation with +12025550100")
    thread = page.locator("ol.thread > li")
    expect(thread).to_have_count(3)
    expect(thread.nth(0)).to_contain_text("a-very-long-path")
    expect(thread.nth(1)).to_contain_text("Can we make it 9?")
    expect(thread.nth(2)).to_contain_text("booked for 8 pm")
    page.get_by_role("button", name="Send the reply").click()  # no text
    expect(page.locator(".field-error")).to_have_text("Text: write a text")
    expect(page.get_by_label("Reply", exact=True)).to_have_attribute("aria-invalid", "true")
    screenshot(page, "conversation-errors")
    page.get_by_label("Reply", exact=True).fill("9 pm it is.")
    page.get_by_label("Phone").select_option(label="Pocket (virtual)")
    page.get_by_role("button", name="Send the reply").click()
    expect(page.get_by_role("status")).to_contain_text("Reply queued")
    expect(thread).to_have_count(4)
    expect(thread.first).to_contain_text("9 pm it is.")
    screenshot(page, "conversation")

    page.goto("/dashboard/conversations")
    today = datetime.now(UTC).date()
    page.get_by_label("What").select_option("messages")
    page.get_by_label("From (UTC date)").fill((today - timedelta(days=1)).isoformat())
    page.get_by_label("To (UTC date)").fill((today + timedelta(days=1)).isoformat())
    with page.expect_download() as waiting:
        page.get_by_role("button", name="Download the CSV").click()
    saved = Path(waiting.value.path()).read_text(encoding="utf-8")
    lines = list(csv.reader(io.StringIO(saved)))
    assert lines[0] == list(MESSAGE_COLUMNS) and len(lines) == 1 + 4  # a line per recipient
    assert waiting.value.suggested_filename.startswith("messages-")

    page.get_by_role("link", name="Messages", exact=True).click()
    table = page.locator("table.messages")
    expect(table).to_contain_text("9 pm it is.")
    expect(table).to_contain_text("https://example.com/a-very-long-path-wi…")
    expect(table.locator("td", has_text="Pocket").first).to_be_visible()
    screenshot(page, "messages-list")
    fits(page, "div.scroll:has(table.messages)")
    assert [e for e in problems.errors if "status of 400" not in e] == []
