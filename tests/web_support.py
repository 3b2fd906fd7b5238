"""Helpers of the web tests: a signed-in HTTP client, a phone on its own thread, Chromium."""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.clients import TLS
from tests.conftest import Account, LiveServer
from tests.fakes.phone import SimulatedPhone

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).parent / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


def alerts_of(html: str) -> list[str]:
    return re.findall(r'role="alert"[^>]*>([^<]+)<', html)


class Dashboard:
    """The dashboard driven with plain HTTP forms, as a browser without JavaScript does."""

    def __init__(self, server: LiveServer, **headers: str) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=30, headers=headers, verify=TLS)

    def sign_in(self, account: Account, password: str | None = None) -> httpx.Response:
        token = csrf_of(self.http.get("/dashboard/login").text)
        form = {"csrf": token, "login": account.login, "password": password or account.password}
        return self.http.post("/dashboard/login", data=form)

    def csrf(self, page: str) -> str:
        """This session's CSRF token, as the form on `page` carries it."""
        return csrf_of(self.http.get(page).text)

    def post(self, path: str, data: dict[str, str] | None = None, page: str = "") -> httpx.Response:
        """Post a form with the CSRF token of `page` (default: the form's own page)."""
        token = csrf_of(self.http.get(page or "/dashboard/messages").text)
        return self.http.post(path, data={"csrf": token, **(data or {})})

    def send(self, text: str = "Hello!", **fields: str) -> httpx.Response:
        form = {"phoneNumbers": "+12025550100", "text": text, "priority": "0", **fields}
        return self.post("/dashboard/send", form, page="/dashboard/send")

    def close(self) -> None:
        self.http.close()


def create_user(server: LiveServer, login: str) -> Account:
    """`server.create_user` from a thread of its own: Playwright's sync API keeps an event loop
    running on the test's thread, where `asyncio.run` is not allowed."""
    made: list[Account] = []
    worker = threading.Thread(target=lambda: made.append(server.create_user(login)))
    worker.start()
    worker.join(timeout=30)
    return made[0]


class PhoneThread:
    """A simulated phone running on an event loop of its own (Playwright's sync API owns the
    test's thread)."""

    def __init__(self, server: LiveServer, account: Account, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        login = (account.login, account.password)
        self.phone = self._run(self._make(server.url + "/api/mobile/v1", login, options))

    async def _make(self, url: str, login: tuple[str, str], options: Any) -> SimulatedPhone:
        return SimulatedPhone(url, login=login, **options)

    def _run(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=30)

    def start(self) -> None:
        self._run(self.phone.start())

    def stop(self) -> None:
        self._run(self.phone.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (its own browsers are not used)."""
    assert shutil.which("chromium") or Path(CHROMIUM).exists(), (
        "Chromium is missing: `make test` installs it (apt-get install chromium)"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


class Problems:
    """Console errors and failed requests of a page; a test asserts there were none."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("requestfailed", self._failed)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def _failed(self, request: Any) -> None:
        # A live stream or fragment fetch cut short by navigating away is not a problem.
        if request.failure != "net::ERR_ABORTED":
            self.errors.append(f"request failed: {request.url} {request.failure}")


#: How long a picture may take, and the most of a page's height it shows: the API docs are
#: 60,000 pixels tall at desktop width, 82,000 at phone width, and a picture of them all took
#: over the pages' usual 15 s once, on a busy machine.
SCREENSHOT_TIMEOUT_MS = 60_000
SCREENSHOT_MOST_PX = 8_000


def screenshot(page: Page, name: str) -> None:
    """Pictures of the page (its top SCREENSHOT_MOST_PX) at desktop and phone widths
    (git-ignored, for people to look at)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        height = page.evaluate("document.documentElement.scrollHeight")
        top = {"x": 0, "y": 0, "width": size["width"], "height": min(height, SCREENSHOT_MOST_PX)}
        picture = SCREENSHOTS / f"{name}-{label}.png"
        page.screenshot(path=str(picture), full_page=True, clip=top, timeout=SCREENSHOT_TIMEOUT_MS)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= size["width"], f"{name} scrolls sideways at {label} width ({width}px)"
    page.set_viewport_size(DESKTOP)
