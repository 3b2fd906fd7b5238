"""Which phone is told of work, and when (docs/routing.md rules 1 and 4), through a real
server whose periodic worker never runs during a test: a wake it would have covered up
cannot hide here. Each test reads the phones' event streams as the app does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.clients import TLS
from tests.conftest import Account, LiveServer, make_settings, running
from tests.test_mobile_api import (
    APP,
    MOBILE,
    basic,
    bearer,
    next_event,
    read_frames,
    register,
    snapshot,
)
from tests.test_mobile_api import report as send_reports

ENQUEUED = "event: MessageEnqueued\ndata: null"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path / "data",
        claim_cap=1,
        worker_interval_seconds=3600,  # no periodic wake during the test
        worker_stall_seconds=7200,
        sse_keepalive_seconds=0.3,
        registration_rate_limit=0,
    )
    with running(settings) as live:
        yield live


@pytest.fixture
def owner(server: LiveServer) -> Account:
    return server.create_user("owner")


@pytest.fixture
def mobile(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + MOBILE, headers=APP, timeout=10, verify=TLS) as client:
        yield client


@pytest.fixture
def api(server: LiveServer, owner: Account) -> Iterator[httpx.Client]:
    with server.client(owner) as client:
        yield client


def drain(lines: Iterator[str]) -> list[str]:
    """Every frame up to the next keep-alive: what was published before this call."""
    frames = []
    while (frame := read_frames(lines, 1)[0]) != ":keepalive":
        frames.append(frame)
    return frames


def send(api: httpx.Client, text: str) -> str:
    answer = api.post("/messages", json={"phoneNumbers": ["+12025550100"], "message": text})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def report(mobile: httpx.Client, token: str, message_id: str, state: str) -> None:
    answer = send_reports(mobile, token, [snapshot(message_id, state, state)])
    assert answer.status_code == 204


def pull(mobile: httpx.Client, token: str) -> list[str]:
    return [m["id"] for m in mobile.get("/message", headers=bearer(token)).json()]


def test_a_report_that_frees_room_wakes_its_phone_and_so_does_a_confirmed_cancel(
    server: LiveServer, owner: Account, mobile: httpx.Client, api: httpx.Client
) -> None:
    token = register(mobile, basic(owner)).json()["token"]
    url = server.url + MOBILE + "/events"
    with httpx.stream("GET", url, headers=bearer(token) | APP, timeout=10, verify=TLS) as stream:
        lines = stream.iter_lines()
        read_frames(lines, 2)  # WebhooksUpdated, SettingsUpdated
        first = send(api, "one")
        assert next_event(lines) == ENQUEUED
        assert pull(mobile, token) == [first]
        second = send(api, "two")  # the phone is at its cap of 1
        assert next_event(lines) == ENQUEUED
        assert pull(mobile, token) == [first]
        drain(lines)

        report(mobile, token, first, "Processed")  # room again, and work waits
        assert next_event(lines) == ENQUEUED
        assert pull(mobile, token) == [second]
        report(mobile, token, first, "Delivered")  # it had left Pending already
        third = send(api, "three")
        assert next_event(lines) == ENQUEUED
        assert pull(mobile, token) == [second]
        drain(lines)

        # The cancelled message leaves the phone's hands only once it confirms; that
        # confirmation frees room, so the phone is told of the third message.
        assert api.delete(f"/messages/{second}").json()["state"] == "Cancelling"
        assert next_event(lines).startswith("event: MessageCancelled")
        report(mobile, token, second, "Cancelled")
        assert next_event(lines) == ENQUEUED
        assert pull(mobile, token) == [third]


def test_a_phone_told_of_work_it_has_no_room_for_passes_it_on(
    server: LiveServer, owner: Account, mobile: httpx.Client, api: httpx.Client
) -> None:
    phones = [register(mobile, basic(owner)).json() for _ in range(2)]
    # Phones take turns in the order of their ids: x is told first.
    x, y = sorted(phones, key=lambda phone: str(phone["id"]))
    url = server.url + MOBILE + "/events"
    with (
        httpx.stream(
            "GET", url, headers=bearer(x["token"]) | APP, timeout=10, verify=TLS
        ) as x_stream,
        httpx.stream(
            "GET", url, headers=bearer(y["token"]) | APP, timeout=10, verify=TLS
        ) as y_stream,
    ):
        x_lines, y_lines = x_stream.iter_lines(), y_stream.iter_lines()
        read_frames(x_lines, 2)
        read_frames(y_lines, 2)
        first = send(api, "one")
        assert next_event(x_lines) == ENQUEUED
        assert pull(mobile, x["token"]) == [first]  # x is at its cap of 1
        send(api, "two")  # y's turn: told, and it has not pulled yet
        assert next_event(y_lines) == ENQUEUED
        send(api, "three")  # y's pull has no room left for it: x's turn
        assert next_event(x_lines) == ENQUEUED
        # x pulls and finds no room: the message it was told of goes to the next phone.
        assert pull(mobile, x["token"]) == [first]
        assert next_event(y_lines) == ENQUEUED
        assert len(pull(mobile, y["token"])) == 1
