"""The dashboard's bulk send: over plain HTTP (forms without JavaScript: upload, preview,
confirm once, progress after a reload, errors, CSRF, another user's batch) and in headless
Chromium at desktop and phone widths."""

from __future__ import annotations

import re
import time
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
    csrf_of,
    screenshot,
)

PAGE = "/dashboard/bulk"
CSV = (
    "name;phone;code\n"
    "Ann;+12025550100;111\n"
    "Bob;555;222\n"
    "Cy;+12025550101;333\n"
    "Zoë;+12025550102;" + "€" * 80 + "\n"
).encode()
TEXT = "Hi {{name}}, your code is {{ code }}"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with running(make_settings(tmp_path / "data", worker_interval_seconds=0.2)) as server:
        yield server


@pytest.fixture
def web(live: LiveServer) -> Iterator[Dashboard]:
    dashboard = Dashboard(live)
    dashboard.sign_in(create_user(live, "alice"))  # on a thread: Playwright may hold a loop
    yield dashboard
    dashboard.close()


def upload(web: Dashboard, content: bytes = CSV, text: str = TEXT, **fields: str) -> httpx.Response:
    form = {"csrf": web.csrf(PAGE), "text": text, "priority": "0", **fields}
    files = {"file": ("people.csv", content, "text/csv")}
    return web.http.post(PAGE, data=form, files=files)


def confirm(web: Dashboard, batch: str) -> httpx.Response:
    return web.http.post(f"{PAGE}/{batch}/send", data={"csrf": web.csrf(PAGE)})


def wait_for(web: Dashboard, batch: str, text: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = web.http.get(f"{PAGE}/{batch}").text
        if text in page:
            return page
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never showed: {page}")


def test_upload_preview_confirm_and_follow_the_progress(web: Dashboard) -> None:
    uploaded = upload(web)
    assert uploaded.status_code == 303
    batch = uploaded.headers["location"].rsplit("/", 1)[1]
    preview = web.http.get(f"{PAGE}/{batch}").text
    assert 'id="bulk-total">3<' in preview
    assert 'id="bulk-parts">4<' in preview  # 1 + 1 + 2 (80 euro signs are 160+ septets)
    assert "Hi Ann, your code is 111" in preview and "Hi Cy, your code is 333" in preview
    assert re.search(
        r"<td>3</td><td><code>555</code></td><td>phone: &#39;555&#39; has no country", preview
    )
    assert "Send 3 messages" in preview
    assert "Hi Bob" not in preview
    confirmed = confirm(web, batch)
    assert confirmed.status_code == 303
    assert confirmed.headers["location"] == f"{PAGE}/{batch}?notice=sending"
    page = wait_for(web, batch, "Queued; waiting for the phones")  # every row queued
    assert "Queued: 3 of 3" in page
    assert '<progress id="bulk-queued" max="3" value="3">' in page
    assert '<td data-state="Pending">3</td>' in page
    assert '<meta http-equiv="refresh" content="10">' in page  # messages not final yet
    assert "phone: &#39;555&#39; has no country code" in page  # the invalid row stays listed
    listing = web.http.get(PAGE).text
    assert f'data-batch-id="{batch}"' in listing and "Queued 3" in listing


def test_a_second_confirmation_sends_nothing_more(web: Dashboard, live: LiveServer) -> None:
    batch = upload(web).headers["location"].rsplit("/", 1)[1]
    assert confirm(web, batch).status_code == 303
    again = confirm(web, batch)
    assert again.headers["location"] == f"{PAGE}/{batch}?notice=already"
    wait_for(web, batch, "Queued; waiting for the phones")
    shown = web.http.get(f"{PAGE}/{batch}?notice=already").text
    assert "confirmed already: nothing more was sent" in shown
    assert "Queued: 3 of 3" in shown and "Send 3 messages" not in shown
    with httpx.Client(
        base_url=live.api, auth=("alice", "correct horse battery"), verify=TLS
    ) as api:
        assert api.get("/messages").headers["x-total-count"] == "3"


@pytest.mark.parametrize(
    ("content", "text", "status", "alert"),
    [
        (
            CSV,
            "Hi {{nme}}",
            400,
            "Text: no such column for {{nme}} (the file's columns: name, phone, code)",
        ),
        (
            b"name,code\nAnn,1\n",
            "Hi",
            400,
            "CSV file: the header row has no phone number column: name one phone, number or "
            "mobile (columns found: 'name', 'code')",
        ),
        (
            b"phone\n" + b"1" * (2 * 1024 * 1024),
            "Hi",
            413,
            "CSV file: the file is larger than 2 MiB",
        ),
        (CSV, "", 400, "Text: enter the text to send"),
    ],
)
def test_a_file_or_text_that_cannot_be_used_is_refused_on_the_form(
    web: Dashboard, content: bytes, text: str, status: int, alert: str
) -> None:
    refused = upload(web, content, text)
    assert refused.status_code == status
    assert alerts_of(refused.text)[0].replace("&#39;", "'") == alert
    assert "data-batch-id" not in web.http.get(PAGE).text  # no batch was kept


def test_forms_need_their_csrf_token_and_batches_are_their_owners(
    web: Dashboard, live: LiveServer
) -> None:
    files = {"file": ("people.csv", CSV, "text/csv")}
    assert web.http.post(PAGE, data={"text": TEXT}, files=files).status_code == 403
    batch = upload(web).headers["location"].rsplit("/", 1)[1]
    assert web.http.post(f"{PAGE}/{batch}/send", data={}).status_code == 403
    other = Dashboard(live)
    other.sign_in(create_user(live, "bob"))
    try:
        assert other.http.get(f"{PAGE}/{batch}").status_code == 404
        token = csrf_of(other.http.get(PAGE).text)
        assert other.http.post(f"{PAGE}/{batch}/send", data={"csrf": token}).status_code == 404
        assert other.http.post(f"{PAGE}/{batch}/discard", data={"csrf": token}).status_code == 404
    finally:
        other.close()
    discarded = web.http.post(f"{PAGE}/{batch}/discard", data={"csrf": web.csrf(PAGE)})
    assert discarded.headers["location"] == f"{PAGE}?notice=discarded"
    assert web.http.get(f"{PAGE}/{batch}").status_code == 404


def test_a_phone_that_is_not_yours_is_refused(web: Dashboard) -> None:
    refused = upload(web, deviceId="someone-elses")
    assert refused.status_code == 400
    assert alerts_of(refused.text) == ["Phone: you have no such phone"]


# In Chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, live: LiveServer) -> Iterator[Page]:
    context = browser.new_context(base_url=live.url, viewport=DESKTOP)
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def sign_in(page: Page, account: Account) -> None:
    page.goto("/dashboard")
    page.get_by_label("Login").fill(account.login)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in").click()


def test_bulk_send_in_a_browser_at_desktop_and_phone_widths(
    page: Page, live: LiveServer, tmp_path: Path
) -> None:
    problems = Problems(page)
    sign_in(page, create_user(live, "alice"))
    page.get_by_role("link", name="Bulk send").click()
    expect(page).to_have_url(f"{live.url}{PAGE}")
    csv = tmp_path / "people.csv"
    csv.write_bytes(CSV)
    page.get_by_label("CSV file").set_input_files(str(csv))
    page.get_by_label("Text").fill("Hi {{nme}}")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("alert")).to_contain_text("no such column for {{nme}}")
    screenshot(page, "bulk-form-error")
    page.get_by_label("CSV file").set_input_files(str(csv))
    page.get_by_label("Text").fill(TEXT)
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#bulk-total")).to_have_text("3")
    expect(page.locator("table.bulk-sample")).to_contain_text("Hi Ann, your code is 111")
    expect(page.locator("table.bulk-problems")).to_contain_text("has no country code")
    screenshot(page, "bulk-preview")
    page.get_by_role("button", name="Send 3 messages").click()
    expect(page.get_by_role("status")).to_contain_text("Confirmed")
    expect(page.locator("#bulk-queued")).to_have_attribute("value", "3")
    page.reload()
    expect(page.locator("#bulk-queued")).to_have_attribute("value", "3")
    expect(page.locator('td[data-state="Pending"]')).to_have_text("3")
    screenshot(page, "bulk-progress")
    page.go_back()  # the preview's address now shows the progress: no second send
    expect(page.locator("#bulk-queued")).to_have_attribute("value", "3")
    expect(page.get_by_role("button", name="Send 3 messages")).to_have_count(0)
    page.goto(PAGE)
    expect(page.locator("table.batches")).to_contain_text("Queued 3")
    screenshot(page, "bulk-list")
    # The refused form's own 400 is the one expected.
    assert [e for e in problems.errors if "status of 400" not in e] == []
    assert len(problems.errors) == 1
