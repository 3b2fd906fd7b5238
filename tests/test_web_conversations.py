"""Conversations over plain HTTP (forms without JavaScript): a thread per number joining what
was sent to it and what it sent, newest first, a reply from the thread, search, isolation
between users; the messages list's text and phone names; CSV exports from the dashboard and
the API (columns, formula-safe cells, batches, ranges)."""

from __future__ import annotations

import csv
import html
import io
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from smsgw.conversations import export
from smsgw.conversations import service as conversations
from tests.clients import TLS
from tests.conftest import Account, LiveServer, running
from tests.web_support import Dashboard, alerts_of
from tests.webhook_support import hub_settings

LIST = "/dashboard/conversations"
THREAD = LIST + "/%2B12025550100"
PHONES = "/dashboard/phones"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """Development mode (a virtual phone receives SMS on request), numbers read in the US."""
    settings = hub_settings(tmp_path / "data", mode="development", default_region="US")
    with running(settings) as live:
        yield live


@pytest.fixture
def alice(server: LiveServer) -> Account:
    return server.create_user("alice")


@pytest.fixture
def web(server: LiveServer, alice: Account) -> Iterator[Dashboard]:
    dashboard = Dashboard(server)
    assert dashboard.sign_in(alice).status_code == 303
    yield dashboard
    dashboard.close()


@pytest.fixture
def api(server: LiveServer, alice: Account) -> Iterator[httpx.Client]:
    with server.client(alice) as client:
        yield client


@pytest.fixture
def phone(web: Dashboard, api: httpx.Client) -> str:
    """A virtual phone named Pocket whose every message fails with "No service"."""
    form = {"name": "Pocket", "delay": "0", "outcome": "failed:No service"}
    assert web.post(PHONES + "/virtual", form, page=PHONES).status_code == 303
    [device] = api.get("/devices").json()
    return str(device["id"])


def send(api: httpx.Client, text: str, *numbers: str) -> str:
    body = {"phoneNumbers": list(numbers or ["+12025550100"]), "textMessage": {"text": text}}
    sent = api.post("/messages", json=body)
    assert sent.status_code == 200, sent.text
    return str(sent.json()["id"])


def receive(web: Dashboard, phone: str, sender: str, text: str) -> None:
    form = {"deviceId": phone, "from": sender, "text": text}
    assert web.post(PHONES + "/virtual/receive", form, page=PHONES).status_code == 303


def wait_until(check: Callable[[], bool], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def items(page: str) -> list[str]:
    """The texts of a conversation's messages, in the page's order."""
    found = re.findall(r'<p class="text">([^<]*)</p>', page)
    return [html.unescape(text) for text in found]


def numbers(page: str) -> list[str]:
    return re.findall(r'<tr data-number="([^"]+)"', page)


def field_errors(page: str) -> list[str]:
    return [html.unescape(e) for e in re.findall(r'class="field-error"[^>]*>([^<]+)<', page)]


def test_a_thread_joins_both_ways_newest_first_and_a_reply_lands_in_it(
    web: Dashboard, api: httpx.Client, phone: str
) -> None:
    first = send(api, "first out")
    receive(web, phone, "+12025550100", "first in")
    send(api, "second out", "+12025550100", "+12025550199")
    receive(web, phone, "(202) 555-0100", "second in")  # a national form: the same number
    receive(web, phone, "+12025550123", "another number")
    listed = web.http.get(LIST).text
    assert numbers(listed) == ["+12025550123", "+12025550100", "+12025550199"]
    row = listed[listed.index('data-number="+12025550100"') :].split("</tr>")[0]
    assert "Them:</span> second in" in row
    assert re.findall(r'data-label="(?:Sent|Received)">(\d+)', row) == ["2", "2"]
    page = web.http.get(THREAD).text
    assert items(page) == ["second in", "second out", "first in", "first out"]
    assert "2 sent · 2 received" in page and "to Pocket" in page
    assert f'href="/dashboard/messages/{first}"' in page
    replied = web.post(THREAD, {"text": "a <b>reply</b>", "deviceId": phone}, page=THREAD)
    assert replied.status_code == 303 and replied.headers["location"] == THREAD + "?notice=sent"
    page = web.http.get(replied.headers["location"]).text
    assert "Reply queued" in page
    assert items(page)[:2] == ["a <b>reply</b>", "second in"]
    assert "a &lt;b&gt;reply&lt;/b&gt;" in page  # escaped
    [newest, *_] = api.get("/messages").json()
    assert newest["recipients"][0]["phoneNumber"] == "+12025550100"
    assert newest["deviceId"] == phone


def test_each_recipient_state_and_error_show_in_the_thread(
    web: Dashboard, api: httpx.Client, phone: str
) -> None:
    message_id = send(api, "will fail")
    wait_until(lambda: api.get(f"/messages/{message_id}").json()["state"] == "Failed")
    page = web.http.get(THREAD).text
    assert '<span class="state state-failed">Failed</span> No service' in page


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"text": ""}, "Text: write a text"),
        ({"text": "hi", "simNumber": "4"}, "SIM: Input should be less than or equal to 3"),
        ({"text": "hi", "deviceId": "nope"}, "Phone: you have no device with id 'nope'"),
    ],
)
def test_a_refused_reply_says_why_on_its_field_and_keeps_the_text(
    web: Dashboard, api: httpx.Client, fields: dict[str, str], problem: str
) -> None:
    refused = web.post(THREAD, fields, page=THREAD)
    assert refused.status_code == 400
    assert field_errors(refused.text) == [problem]
    assert f">{fields['text']}</textarea>" in refused.text
    assert api.get("/messages").json() == []


def test_a_reply_to_a_sender_name_is_refused_with_the_reason(web: Dashboard) -> None:
    refused = web.post(LIST + "/BANK", {"text": "hello"}, page=LIST + "/BANK")
    assert refused.status_code == 400
    [alert] = alerts_of(refused.text)
    assert html.unescape(alert).startswith("Number BANK: 'BANK' is not a phone number")


def test_a_number_has_one_address_and_any_text_is_safe_in_it(web: Dashboard) -> None:
    moved = web.http.get(LIST + "/+1%20202%20555%200100?page=1")
    assert moved.status_code == 303 and moved.headers["location"] == THREAD + "?page=1"
    moved = web.http.get(LIST + "/2025550100")  # national, read in the server's region
    assert moved.headers["location"] == THREAD
    odd = web.http.get(LIST + "/%3Cscript%3E%2Fx%3F")
    assert odd.status_code == 200
    assert (
        "<script>" not in odd.text
        and 'action="/dashboard/conversations/%3Cscript%3E%2Fx%3F"' in odd.text
    )
    assert web.http.get(LIST + "/" + "9" * 200).status_code == 404


def test_search_by_number_or_text(
    web: Dashboard, api: httpx.Client, phone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    send(api, "Your code is 4242", "+12025550100")
    send(api, "100% off today", "+12025550199")
    receive(web, phone, "+12025550123", "stop by later")
    receive(web, phone, "BANK", "balance 12")

    def found(query: str) -> list[str]:
        return numbers(web.http.get(LIST, params={"q": query}).text)

    assert found("0123") == ["+12025550123"]
    assert found("+1 202 555") == ["+12025550123", "+12025550199", "+12025550100"]
    assert found("your CODE") == ["+12025550100"]
    assert found("100%") == ["+12025550199"]  # % is a character, not a wildcard
    assert found("_") == []
    assert found("12") == ["BANK", "+12025550123", "+12025550199", "+12025550100"]
    assert found("nothing like it") == []
    page = web.http.get(LIST, params={"q": "your CODE"}).text
    assert "Newest match" in page and "Your code is 4242" in page
    monkeypatch.setattr(conversations, "WINDOW", 1)  # the list reads the newest only
    assert numbers(web.http.get(LIST).text) == ["BANK", "+12025550199"]
    assert found("4242") == ["+12025550100"]  # a search reads further
    monkeypatch.setattr(conversations, "SEARCH_WINDOW", 1)
    assert found("4242") == []  # beyond the window
    assert found("+1 (202) 555-0100") == ["+12025550100"]  # a whole number: any age


def test_the_list_pages(web: Dashboard, api: httpx.Client) -> None:
    for n in range(22):
        send(api, f"to {n}", f"+120255501{n:02d}")
    first = web.http.get(LIST).text
    assert len(numbers(first)) == 20 and "22 conversations" in first
    second = web.http.get(LIST, params={"page": "2"}).text
    assert numbers(second) == ["+12025550101", "+12025550100"]
    assert 'rel="prev"' in second and 'rel="next"' not in second


def test_a_thread_pages_newest_first(web: Dashboard, api: httpx.Client) -> None:
    for n in range(22):
        send(api, f"number {n}")
    first = web.http.get(THREAD).text
    assert items(first) == [f"number {n}" for n in range(21, 1, -1)]
    assert 'href="?page=2" rel="next"' in first
    second = web.http.get(THREAD, params={"page": "2"}).text
    assert items(second) == ["number 1", "number 0"] and 'rel="next"' not in second
    too_deep = web.http.get(THREAD, params={"page": "999"})
    assert too_deep.status_code == 400 and "export older ones as CSV" in too_deep.text
    replied = web.post(LIST + "/+1 202 555 0100", {"text": "to the number"}, page=THREAD)
    assert replied.headers["location"] == THREAD + "?notice=sent"


def test_another_user_sees_none_of_it(
    server: LiveServer, web: Dashboard, api: httpx.Client, phone: str
) -> None:
    send(api, "for alice only")
    receive(web, phone, "+12025550100", "to alice only")
    bob = Dashboard(server)
    bob.sign_in(server.create_user("bob"))
    try:
        assert numbers(bob.http.get(LIST).text) == []
        assert numbers(bob.http.get(LIST, params={"q": "alice"}).text) == []
        page = bob.http.get(THREAD).text
        assert "alice only" not in page and "No messages with this number" in page
        day = datetime.now(UTC).date().isoformat()
        for what in ("messages", "inbox"):
            query = {"what": what, "from": day, "to": day}
            lines = bob.http.get("/dashboard/export", params=query).text.splitlines()
            assert len(lines) == 1  # the header only
    finally:
        bob.close()


def test_the_message_list_shows_the_texts_start_and_the_phones_name(
    web: Dashboard, api: httpx.Client, phone: str
) -> None:
    long = "<b>Hello</b> and welcome to a text that goes on and on and on"
    message_id = send(api, long)
    wait_until(lambda: api.get(f"/messages/{message_id}").json()["deviceId"] == phone)
    table = web.http.get("/dashboard/messages").text
    row = table[table.index(f'data-message-id="{message_id}"') :].split("</tr>")[0]
    assert "&lt;b&gt;Hello&lt;/b&gt; and welcome to a text that…" in row
    assert ">Pocket</td>" in row and phone not in row.split('data-label="Phone"')[1]
    assert f'href="{THREAD}"' in row


def day_range(days_before: int = 1, days_after: int = 1) -> dict[str, str]:
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=days_before), today + timedelta(days=days_after)
    return {"from": first.isoformat(), "to": last.isoformat()}


def read_csv(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith('attachment; filename="')
    return list(csv.DictReader(io.StringIO(response.text)))


def test_the_dashboard_exports_messages_and_inbox_as_formula_safe_csv(
    web: Dashboard, api: httpx.Client, phone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "BATCH", 2)  # several batches, rows sharing a time or not
    ids = [send(api, '=HYPERLINK("http://x")', "+12025550100", "+12025550199")]
    ids += [send(api, f'plain {n}, with "quotes"\nand a line') for n in range(4)]
    receive(web, phone, "+12025550123", "@SUM(A1)")
    receive(web, phone, "+12025550124", "-1 +1")
    rows = read_csv(web.http.get("/dashboard/export", params={"what": "messages", **day_range()}))
    assert list(rows[0]) == list(export.MESSAGE_COLUMNS)
    assert [r["id"] for r in rows] == [ids[0], ids[0], *ids[1:]]  # a line per recipient
    assert rows[0]["text"] == '\'=HYPERLINK("http://x")'
    assert [r["phoneNumber"] for r in rows[:2]] == ["'+12025550100", "'+12025550199"]
    assert rows[2]["text"] == 'plain 0, with "quotes"\nand a line'
    assert rows[2]["state"] and rows[2]["isEncrypted"] == "false"
    received = read_csv(web.http.get("/dashboard/export", params={"what": "inbox", **day_range()}))
    assert list(received[0]) == list(export.INBOX_COLUMNS)
    assert [(r["sender"], r["text"], r["type"]) for r in received] == [
        ("'+12025550123", "'@SUM(A1)", "SMS"),
        ("'+12025550124", "'-1 +1", "SMS"),
    ]
    assert received[0]["deviceId"] == phone
    before = read_csv(
        web.http.get("/dashboard/export", params={"what": "messages", **day_range(9, -2)})
    )
    assert before == []


@pytest.mark.parametrize(
    ("what", "first", "last", "problem"),
    [
        ("messages", "", "2026-01-01", "From: give a date"),
        ("messages", "2026-01-01", "soon", "To: use a date such as 2026-01-31"),
        ("messages", "2026-01-02", "2026-01-01", "To: must not be before the From day"),
        ("inbox", "2025-01-01", "2026-01-02", "To: a range of at most 366 days"),
        ("users", "2026-01-01", "2026-01-01", "What: choose messages or received messages"),
    ],
)
def test_a_refused_export_says_why_on_its_field(
    web: Dashboard, what: str, first: str, last: str, problem: str
) -> None:
    query = {"what": what, "from": first, "to": last}
    refused = web.http.get("/dashboard/export", params=query)
    assert refused.status_code == 400 and "text/html" in refused.headers["content-type"]
    assert field_errors(refused.text) == [problem]


def test_the_api_exports_with_the_list_scopes_and_checks_the_range(
    server: LiveServer, web: Dashboard, api: httpx.Client, phone: str
) -> None:
    message_id = send(api, "over the API")
    receive(web, phone, "+12025550100", "back over the API")
    now = datetime.now(UTC)
    span = {
        "from": (now - timedelta(hours=1)).isoformat(),
        "to": (now + timedelta(hours=1)).isoformat(),
    }
    [sent] = read_csv(api.get("/exports/messages", params=span))
    assert (sent["id"], sent["text"], sent["phoneNumber"]) == (
        message_id,
        "over the API",
        "'+12025550100",
    )
    [got] = read_csv(api.get("/exports/inbox", params=span))
    assert got["text"] == "back over the API" and got["receivedAt"].endswith("Z")
    for params, message in (
        ({}, "from"),
        ({"from": span["from"], "to": span["from"]}, "to: must be after from"),
        ({"from": "2024-01-01T00:00:00Z", "to": "2025-01-02T00:00:01Z"}, "at most 366 days"),
        ({"from": "yesterday", "to": span["to"]}, "RFC 3339"),
    ):
        refused = api.get("/exports/messages", params=params)
        assert refused.status_code == 400 and message in refused.json()["message"]
    token = api.post("/auth/token", json={"scopes": ["inbox:list"]}).json()["access_token"]
    with httpx.Client(
        base_url=server.api, headers={"Authorization": f"Bearer {token}"}, verify=TLS
    ) as app:
        assert app.get("/exports/inbox", params=span).status_code == 200
        refused = app.get("/exports/messages", params=span)
        assert refused.status_code == 403 and "messages:list" in refused.json()["message"]
