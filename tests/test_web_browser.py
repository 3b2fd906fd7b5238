"""The web pages in real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.clients import TLS
from tests.conftest import Account, LiveServer, make_settings, running
from tests.web_support import (
    DESKTOP,
    PhoneThread,
    Problems,
    chromium,
    create_user,
    screenshot,
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path / "data", worker_interval_seconds=0.2, sse_keepalive_seconds=1,
        web_live_keepalive_seconds=1,
    )  # fmt: skip
    with running(settings) as live:
        yield live


@pytest.fixture
def page(browser: Browser, live_server: LiveServer) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP)
    outside: list[str] = []

    def offline(route: Route) -> None:
        """Nothing may come from beyond smsgw (no CDN): such a request fails the test."""
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()
    assert outside == [], f"requests beyond smsgw: {outside}"


def sign_in(page: Page, account: Account, password: str | None = None) -> None:
    page.goto("/dashboard")
    page.get_by_label("Login").fill(account.login)
    page.get_by_label("Password").fill(password or account.password)
    page.get_by_role("button", name="Sign in").click()


def send(page: Page, text: str) -> str:
    page.goto("/dashboard/send")
    page.get_by_label("Recipients").fill("+12025550100")
    page.get_by_label("Text").fill(text)
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_contain_text("Message queued")
    return page.url.split("/")[-1].split("?")[0]


def test_send_watch_it_get_delivered_live_cancel_and_sign_out(
    page: Page, live_server: LiveServer
) -> None:
    problems = Problems(page)
    alice = create_user(live_server, "alice")
    sign_in(page, alice)
    expect(page).to_have_url(f"{live_server.url}/dashboard")  # the overview
    doomed = send(page, "cancel me")
    page.get_by_role("button", name="Cancel this message").click()
    expect(page.locator("#message-state")).to_have_text("Cancelled")
    kept = send(page, "Hello from the dashboard")
    page.get_by_role("link", name="Messages", exact=True).click()
    table = page.locator("table.messages")
    expect(table.locator(f'tr[data-message-id="{kept}"]')).to_contain_text("Pending")
    expect(table.locator(f'tr[data-message-id="{doomed}"]')).to_contain_text("Cancelled")
    expect(page.locator("html[data-live-ready]")).to_have_count(1)
    page.evaluate("window.notReloaded = true")
    phone = PhoneThread(live_server, alice)
    phone.start()
    try:
        expect(table.locator(f'tr[data-message-id="{kept}"]')).to_contain_text(
            "Delivered", timeout=20_000
        )
        assert page.evaluate("window.notReloaded") is True, "the page was reloaded"
        page.goto(f"/dashboard/messages/{kept}")
        expect(page.locator("#message-state")).to_have_text("Delivered")
        expect(page.locator("ol.history")).to_contain_text("Sent")
    finally:
        phone.stop()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    page.goto("/dashboard/messages")
    expect(page).to_have_url(f"{live_server.url}/dashboard/login?next=%2Fdashboard%2Fmessages")
    assert problems.errors == []


def test_the_detail_page_follows_the_phone_without_reload(
    page: Page, live_server: LiveServer
) -> None:
    problems = Problems(page)
    alice = create_user(live_server, "alice")
    sign_in(page, alice)
    message_id = send(page, "watch the states")
    expect(page.locator("html[data-live-ready]")).to_have_count(1)
    page.evaluate("window.notReloaded = true")
    phone = PhoneThread(live_server, alice)
    phone.start()
    try:
        expect(page.locator("#message-state")).to_have_text("Delivered", timeout=20_000)
        expect(page.locator("table")).to_contain_text("Delivered")
        assert page.evaluate("window.notReloaded") is True
        assert message_id in page.url
    finally:
        phone.stop()
    assert problems.errors == []


def test_a_wrong_password_is_refused(page: Page, live_server: LiveServer) -> None:
    problems = Problems(page)
    alice = create_user(live_server, "alice")
    sign_in(page, alice, password="wrong password")
    expect(page.get_by_role("alert")).to_have_text("Wrong login or password.")
    expect(page).to_have_url(f"{live_server.url}/dashboard/login")
    assert [e for e in problems.errors if "401" not in e] == []


def test_every_page_renders_without_errors_at_desktop_and_phone_width(
    page: Page, live_server: LiveServer
) -> None:
    problems = Problems(page)
    for path, name in (("/", "home"), ("/docs", "docs"), ("/dashboard/login", "login")):
        page.goto(path)
        screenshot(page, name)
    page.goto("/docs/interactive")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("smsgw")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    screenshot(page, "docs-interactive")
    alice = create_user(live_server, "alice")
    sign_in(page, alice)
    message_id = send(page, "for the pictures")
    screenshot(page, "message")
    page.get_by_role("button", name="Cancel this message").click()
    for path, name in (
        ("/dashboard", "overview-first"),
        ("/dashboard/messages", "messages"),
        ("/dashboard/conversations", "conversations-first"),
        ("/dashboard/send", "send"),
        ("/dashboard/bulk", "bulk"),
        ("/dashboard/opt-outs", "opt-outs-first"),
        ("/dashboard/account", "account"),
        ("/dashboard/settings", "settings"),
        ("/dashboard/tokens", "tokens"),
        ("/dashboard/keys", "keys"),
        ("/dashboard/webhooks", "webhooks"),
        ("/dashboard/inbox", "inbox"),
        ("/dashboard/phones", "phones"),
    ):
        page.goto(path)
        screenshot(page, name)
    page.get_by_role("button", name="Get a one-time code").click()
    expect(page.locator("#one-time-code")).to_have_text(re.compile(r"^[0-9]{6}$"))
    screenshot(page, "phones-code")
    issue_token(page, "messages:send")
    screenshot(page, "tokens-issued")
    page.goto("/dashboard/settings")
    page.get_by_label("Messages per limit period").fill("0")
    page.get_by_role("button", name="Save the settings").click()
    expect(page.locator(".field-error")).to_have_count(1)
    screenshot(page, "settings-errors")
    assert message_id
    assert [e for e in problems.errors if "status of 400" not in e] == []


def test_the_dashboard_works_from_the_keyboard(page: Page, live_server: LiveServer) -> None:
    alice = create_user(live_server, "alice")
    page.goto("/")
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    page.goto("/dashboard/login")
    expect(page.get_by_label("Login")).to_be_focused()
    page.keyboard.type(alice.login)
    page.keyboard.press("Tab")
    page.keyboard.type(alice.password)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_server.url}/dashboard")
    page.goto("/dashboard/messages")
    for field in ("State", "From (UTC date)", "Per page"):
        expect(page.get_by_label(field)).to_be_visible()


def issue_token(page: Page, scope: str) -> str:
    page.goto("/dashboard/tokens")
    page.get_by_label(scope, exact=True).check()
    page.get_by_label("Lifetime in seconds").fill("600")
    page.get_by_role("button", name="Issue the token").click()
    expect(page.get_by_role("status")).to_contain_text("shown only this once")
    token: str = page.get_by_label("Access token").input_value()
    return token


def test_issue_a_token_copy_it_use_it_and_revoke_it(page: Page, live_server: LiveServer) -> None:
    problems = Problems(page)
    alice = create_user(live_server, "alice")
    sign_in(page, alice)
    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_text("You have no live API token.")).to_be_visible()
    token = issue_token(page, "messages:list")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy the access token").click()
    expect(page.locator("#access-token-said")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == token
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(live_server.api + "/messages", headers=bearer, verify=TLS).status_code == 200
    page.goto("/dashboard/tokens")
    expect(page.get_by_label("Access token")).to_have_count(0)  # shown only once
    assert token not in page.content()
    row = page.locator("table.tokens tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("messages:list")
    row.get_by_role("button", name=re.compile("^Revoke token")).click()
    expect(page.get_by_role("status")).to_contain_text("Token revoked")
    expect(page.locator("table.tokens")).to_have_count(0)
    assert httpx.get(live_server.api + "/messages", headers=bearer, verify=TLS).status_code == 401
    assert problems.errors == []


def test_create_a_key_copy_it_use_it_and_revoke_it(page: Page, live_server: LiveServer) -> None:
    problems = Problems(page)
    alice = create_user(live_server, "alice")
    sign_in(page, alice)
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_text("You have no API key.")).to_be_visible()
    page.get_by_label("Name").fill("billing app")
    page.get_by_label("messages:list", exact=True).check()
    page.get_by_role("button", name="Create the key").click()
    expect(page.get_by_role("status")).to_contain_text("shown only this once")
    key = page.get_by_label("API key", exact=True).input_value()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy the API key").click()
    expect(page.locator("#api-key-said")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == key
    bearer = {"Authorization": f"Bearer {key}"}
    assert httpx.get(live_server.api + "/messages", headers=bearer, verify=TLS).status_code == 200
    screenshot(page, "keys-created")
    page.goto("/dashboard/keys")
    expect(page.get_by_label("API key", exact=True)).to_have_count(0)  # shown only once
    assert key not in page.content()
    row = page.locator("table.keys tbody tr")
    expect(row).to_contain_text("billing app")
    expect(row).to_contain_text("live")
    row.get_by_role("button", name="Revoke API key billing app").click()
    expect(page.get_by_role("status")).to_contain_text("API key revoked")
    expect(row).to_contain_text("revoked")
    expect(row.get_by_role("button")).to_have_count(0)
    assert httpx.get(live_server.api + "/messages", headers=bearer, verify=TLS).status_code == 401
    assert problems.errors == []


def test_change_settings_see_errors_by_field_then_see_them_saved(
    page: Page, live_server: LiveServer
) -> None:
    problems = Problems(page)
    alice = create_user(live_server, "alice")
    sign_in(page, alice)
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Sending limit per").select_option("PerHour")
    page.get_by_label("Messages per limit period").fill("50")
    page.get_by_label("Send only within work hours").check()
    page.get_by_label("Work hours start (HH:mm, 24-hour)").fill("08:30")
    page.get_by_label("Signing key (new value)").fill("never-shown-k3y")
    page.get_by_role("button", name="Save the settings").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved")
    end = page.get_by_label("Work hours end (HH:mm, 24-hour)")
    expect(end).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#err-messages-work_hours_end")).to_contain_text(
        "required when work_hours_enabled is true"
    )
    expect(page.get_by_label("Messages per limit period")).to_have_value("50")  # kept
    end.fill("17:00")
    page.get_by_label("Signing key (new value)").fill("never-shown-k3y")
    page.get_by_role("button", name="Save the settings").click()
    expect(page.get_by_role("status")).to_contain_text("Settings saved")
    page.reload()
    expect(page.get_by_label("Sending limit per")).to_have_value("PerHour")
    expect(page.get_by_label("Messages per limit period")).to_have_value("50")
    expect(page.get_by_label("Send only within work hours")).to_be_checked()
    expect(page.get_by_label("Work hours end (HH:mm, 24-hour)")).to_have_value("17:00")
    assert "never-shown-k3y" not in page.content()
    auth = (alice.login, alice.password)
    saved = httpx.get(live_server.api + "/settings", auth=auth, verify=TLS).json()
    assert saved["messages"]["limit_value"] == 50 and saved["webhooks"] == {}
    assert [e for e in problems.errors if "status of 400" not in e] == []  # the refused save


def test_a_message_sent_through_the_api_appears_in_the_open_table(
    page: Page, live_server: LiveServer
) -> None:
    problems = Problems(page)
    alice = create_user(live_server, "alice")
    sign_in(page, alice)
    page.get_by_role("link", name="Messages", exact=True).click()
    expect(page.locator("html[data-live-ready]")).to_have_count(1)
    page.evaluate("window.notReloaded = true")
    body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "from an app"}}
    auth = (alice.login, alice.password)
    sent = httpx.post(live_server.api + "/messages", json=body, auth=auth, verify=TLS)
    assert sent.status_code == 200
    message_id = sent.json()["id"]
    row = page.locator(f'table.messages tr[data-message-id="{message_id}"]')
    expect(row).to_contain_text("Pending")
    cancelled = httpx.delete(f"{live_server.api}/messages/{message_id}", auth=auth, verify=TLS)
    assert cancelled.status_code == 200
    expect(row).to_contain_text("Cancelled")
    assert page.evaluate("window.notReloaded") is True, "the page was reloaded"
    assert problems.errors == []


def add_webhook(page: Page, url: str, event: str) -> None:
    page.goto("/dashboard/webhooks")
    page.get_by_label("URL", exact=True).fill(url)
    page.get_by_label("Event").select_option(event)
    page.get_by_role("button", name="Add the webhook").click()


def test_add_a_webhook_see_it_listed_see_its_log_and_delete_it(
    page: Page, live_server: LiveServer
) -> None:
    problems = Problems(page)
    alice = create_user(live_server, "alice")
    sign_in(page, alice)
    page.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_text("You have no webhook.")).to_be_visible()
    add_webhook(page, "http://example.com/plain", "sms:sent")
    expect(page.locator(".field-error")).to_have_text(
        "URL: must start with https:// (or the operator sets "
        "SMSGW_WEBHOOKS_ALLOW_PRIVATE_URLS=true to allow http://)"
    )
    expect(page.get_by_label("URL", exact=True)).to_have_value("http://example.com/plain")
    expect(page.get_by_label("Event")).to_have_value("sms:sent")
    screenshot(page, "webhooks-errors")
    add_webhook(page, "https://example.com/a-rather-long-path/for-the-hook?with=query", "sms:sent")
    expect(page.get_by_role("status")).to_contain_text("Webhook saved.")
    row = page.locator("table.webhooks tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("sms:sent")
    expect(row).to_contain_text("https://example.com/a-rather-long-path")
    expect(row).to_contain_text("all phones")
    page.get_by_role("button", name="Show the signing key").click()
    key = page.get_by_label("Signing key", exact=True).input_value()
    assert len(key) >= 24
    with httpx.Client(
        base_url=live_server.api, auth=(alice.login, alice.password), verify=TLS
    ) as api:
        assert api.get("/webhooks/signing/key").json()["signingKey"] == key
        [hook] = api.get("/webhooks").json()
    screenshot(page, "webhooks-key")
    row.get_by_role("link", name=re.compile("^Delivery log")).click()
    expect(page.get_by_role("heading", name="Delivery log")).to_be_visible()
    expect(page.get_by_text("No delivery yet.")).to_be_visible()
    screenshot(page, "webhook-log")
    page.get_by_role("link", name="← Webhooks").click()
    page.get_by_role("button", name=f"Delete webhook {hook['id']}").click()
    expect(page.get_by_role("status")).to_contain_text("Webhook deleted.")
    expect(page.locator("table.webhooks")).to_have_count(0)
    with httpx.Client(
        base_url=live_server.api, auth=(alice.login, alice.password), verify=TLS
    ) as api:
        assert api.get("/webhooks").json() == []
    assert [e for e in problems.errors if "status of 400" not in e] == []


def test_the_inbox_shows_what_a_phone_received_and_filters_it(
    page: Page, live_server: LiveServer
) -> None:
    problems = Problems(page)
    alice = create_user(live_server, "alice")
    device = PhoneThread(live_server, alice)
    device.start()

    async def receive() -> None:
        device.phone.receive_sms("+12025550111", "a long received message " * 8)
        device.phone.receive_data_sms("+12025550112", b"\x01\x02")

    try:
        with httpx.Client(
            base_url=live_server.api, auth=(alice.login, alice.password), verify=TLS
        ) as api:
            for _ in range(200):
                if device.phone.webhooks:
                    break
                page.wait_for_timeout(50)
            device._run(receive())
            for _ in range(200):
                if api.get("/inbox").headers["X-Total-Count"] == "2":
                    break
                page.wait_for_timeout(50)
        sign_in(page, alice)
        page.get_by_role("link", name="Inbox").click()
        rows = page.locator("table.inbox tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.filter(has_text="DATA_SMS")).to_have_count(1)
        expect(rows.filter(has_text="a long received message")).to_have_count(1)
        screenshot(page, "inbox-rows")
        page.get_by_label("Type").select_option("SMS")
        page.get_by_role("button", name="Filter").click()
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("+12025550111")
        page.get_by_role("button", name="Refresh from phones").click()
        expect(page.get_by_role("status")).to_contain_text("Asked your phones")
    finally:
        device.stop()
    assert problems.errors == []


def test_a_change_before_the_live_stream_opens_still_shows(
    page: Page, live_server: LiveServer
) -> None:
    """The page is rendered, then the message changes, then the page's stream opens: the
    stream's `ready` makes the page fetch its fragment once, so the change is not missed."""
    alice = create_user(live_server, "alice")
    sign_in(page, alice)
    message_id = send(page, "cancelled while the page loads")
    cancelled: list[int] = []

    def cancel_first(route: Route) -> None:
        if not cancelled:  # the page is on screen, its stream not yet open: change it now
            answer = httpx.delete(
                f"{live_server.api}/messages/{message_id}",
                auth=(alice.login, alice.password),
                verify=TLS,
            )
            cancelled.append(answer.status_code)
        route.continue_()

    page.route("**/dashboard/live", cancel_first)
    page.reload()
    expect(page.locator("html[data-live-ready]")).to_have_count(1)
    expect(page.locator("#message-state")).to_have_text("Cancelled")
    assert cancelled == [200]


def test_the_send_form_counts_parts_as_the_text_is_typed(
    page: Page, live_server: LiveServer
) -> None:
    problems = Problems(page)
    sign_in(page, create_user(live_server, "alice"))
    page.goto("/dashboard/send")
    text = page.get_by_label("Text")
    text.fill("Hello")
    expect(page.locator("#text-parts")).to_have_text("5 characters: 1 SMS part (GSM-7)")
    text.fill("Привет! " * 9)
    expect(page.locator("#text-parts")).to_have_text("71 characters: 2 SMS parts (UCS-2)")
    assert problems.errors == []
