"""The dashboard's overview over plain HTTP (as a browser without JavaScript): outcomes per
hour and day, delivery rate, queue, phones with their health, recent failures; another
user's data never shows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from smsgw.phonehealth.repository import HealthRecord
from smsgw.phonehealth.service import battery_text, connection_text, parse
from tests.conftest import CLOCK_START, Account, LiveServer, database_rows, running
from tests.web_support import Dashboard
from tests.webhook_support import Api, eventually, hub_settings, phone, run, started, until

DELIVERED, FAILED, SENT = "+12025550101", "+12025550102", "+12025550103"
NO_SERVICE = "RESULT_ERROR_NO_SERVICE"
ROW = re.compile(r'<tr><th scope="row">([^<]+)</th><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td></tr>')


def radio(_message_id: str, number: str) -> tuple[str, str | None]:
    """What happens to each number: delivered, failed with a reason, or sent (no report)."""
    return {FAILED: ("Failed", NO_SERVICE), SENT: ("Sent", None)}.get(number, ("Delivered", None))


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with running(hub_settings(tmp_path / "data", presence_flush_seconds=0.2)) as server:
        yield server


def chart_rows(html: str, table_id: str) -> dict[str, tuple[int, int, int]]:
    """A chart's table: (delivered, sent, failed) by its row's label."""
    table = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return {label: (int(d), int(s), int(f)) for label, d, s, f in ROW.findall(table)}


def nonzero(rows: dict[str, tuple[int, int, int]]) -> dict[str, tuple[int, int, int]]:
    return {label: counts for label, counts in rows.items() if any(counts)}


async def finished(api: Api, message_ids: list[str]) -> bool:
    for message_id in message_ids:
        state = (await api.client.get(f"/messages/{message_id}")).json()["state"]
        if state in ("Pending", "Processed"):
            return False
    return True


async def send_at(at: list[datetime], moment: datetime, api: Api, *numbers: str) -> str:
    at[0] = moment
    return await api.send("overview", numbers)


def page_of(server: LiveServer, account: Account) -> str:
    dashboard = Dashboard(server)
    try:
        assert dashboard.sign_in(account).headers["location"] == "/dashboard"
        response = dashboard.http.get("/dashboard")
        assert response.status_code == 200
        return response.text
    finally:
        dashboard.close()


def test_the_overview_counts_outcomes_queue_and_failures_of_its_owner_only(
    live: LiveServer, at: list[datetime]
) -> None:
    alice, bob = live.create_user("alice"), live.create_user("bob")
    start = CLOCK_START  # 2026-03-01 12:00 UTC
    names: dict[str, str] = {}

    async def scenario() -> None:
        api, other = Api(live, alice), Api(live, bob)
        done = [
            await send_at(at, start - timedelta(days=40), api, DELIVERED),  # beyond 30 days
            await send_at(at, start - timedelta(hours=26), api, DELIVERED),  # 02-28 10:00
            await send_at(at, start - timedelta(minutes=100), api, DELIVERED),  # 10:20
            await send_at(at, start - timedelta(minutes=95), api, FAILED),  # 10:25
            await send_at(at, start - timedelta(minutes=20), api, SENT),  # 11:40
            await send_at(at, start - timedelta(minutes=19), api, DELIVERED),  # 11:41
            await send_at(at, start - timedelta(minutes=18), api, DELIVERED, FAILED),  # mixed
        ]
        device = await started(phone(live, alice, outcome=radio, name="Pixel/alice"))
        names["alice"] = device.credentials.id if device.credentials else ""
        await until(lambda: finished(api, done))
        await device.stop()
        bobs_phone = await started(phone(live, bob, outcome=radio, name="Nokia/bob"))
        bobs = [await send_at(at, start - timedelta(minutes=30), other, FAILED)]  # 11:30
        await until(lambda: finished(other, bobs))
        await bobs_phone.stop()
        await send_at(at, start - timedelta(minutes=10), api, DELIVERED)  # 11:50, queued
        await send_at(at, start - timedelta(minutes=5), api, DELIVERED)  # 11:55, queued
        await send_at(at, start - timedelta(minutes=50), other, DELIVERED)  # bob's, queued
        await api.client.aclose()
        await other.client.aclose()

    run(scenario)
    at[0] = start + timedelta(minutes=30)
    html = page_of(live, alice)
    assert nonzero(chart_rows(html, "hours-table")) == {
        "2026-03-01 10:00": (1, 0, 1),
        "2026-03-01 11:00": (1, 2, 0),
    }
    assert len(chart_rows(html, "hours-table")) == 24
    days = chart_rows(html, "days-table")
    assert len(days) == 30 and min(days) == "2026-01-31" and max(days) == "2026-03-01"
    assert nonzero(days) == {"2026-02-28": (1, 0, 0), "2026-03-01": (2, 2, 1)}
    assert re.search(r'id="rate-24h"><dt>[^<]+</dt><dd class="figure">66.7 %<', html)
    assert re.search(r'id="rate-30d"><dt>[^<]+</dt><dd class="figure">75.0 %<', html)
    assert '<dd class="figure">2 Pending</dd>' in html
    assert "2 wait for a phone, 0 with a phone" in html
    assert re.search(r'id="oldest"><dt>[^<]+</dt><dd class="figure">40 min ago<', html)
    failures = html.split('class="failures"', 1)[1].split("</table>", 1)[0]
    assert failures.count("<tr>") == 2  # the header and alice's one failed recipient
    assert FAILED in failures and NO_SERVICE in failures and "Pixel/alice" in failures
    assert "Nokia/bob" not in html and "bob" not in html.split("<main", 1)[1]
    row = html.split(f'data-sender-id="{names["alice"]}"', 1)[1].split("</tr>", 1)[0]
    # Taken by the phone and accepted in the last 24 h: the four of 10:20 to 11:42; of
    # them, accepted in the last hour (since 11:30): the three of 11:40 to 11:42.
    assert '<td class="volume">3 / 5</td>' in row
    assert "no report yet" in row
    # Its budget: the 8 parts (one per recipient) it was handed today at 11:42; none in this
    # minute (12:30). The suite runs without limits, so no "of N" and no link to them.
    assert '<td class="budget">0 this minute<br>8 today</td>' in row


HEALTH = {
    "status": "warn",
    "checks": {
        "battery:level": {"status": "warn", "observedValue": 23, "observedUnit": "percent",
                          "description": "Battery level in percent"},
        "battery:charging": {"status": "pass", "observedValue": 5, "observedUnit": "flags",
                             "description": "Is the phone charging?"},
        "connection:status": {"status": "pass", "observedValue": 1, "observedUnit": "boolean",
                              "description": "Internet connection status"},
        "connection:transport": {"status": "pass", "observedValue": 2, "observedUnit": "flags",
                                 "description": "Network transport type"},
        "connection:cellular": {"status": "pass", "observedValue": 4, "observedUnit": "index",
                                "description": "Cellular network type"},
        "messages:failed": {"status": "pass", "observedValue": 2, "observedUnit": "messages",
                            "description": "Failed messages for last hour"},
    },
}  # fmt: skip


def test_a_phones_ping_keeps_its_health_and_the_overview_shows_it(
    live: LiveServer, at: list[datetime]
) -> None:
    alice = live.create_user("alice")
    device_ids: list[str] = []

    async def scenario() -> None:
        device = await started(phone(live, alice))
        assert device.credentials is not None
        device_ids.append(device.credentials.id)
        # The phone posts its pings to smsgw without any webhook of the user's.
        assert [h["event"] for h in device.webhooks].count("system:ping") == 1
        device.ping(HEALTH)
        await eventually(lambda: ("system:ping", 204) in device.webhook_posts)
        await device.stop()

    run(scenario)
    stored = database_rows(
        live.settings,
        "SELECT device_id, status, battery_level, battery_charging, connection_status,"
        " transport, cellular, failed_last_hour FROM phone_health",
    )
    assert [tuple(row) for row in stored] == [(device_ids[0], "warn", 23, 5, 1, 2, 4, 2)]
    at[0] = CLOCK_START + timedelta(minutes=3)
    html = page_of(live, alice)
    row = html.split(f'data-sender-id="{device_ids[0]}"', 1)[1].split("</tr>", 1)[0]
    assert '<td class="battery">23 %, charging on USB</td>' in row
    assert '<td class="connection">online, cellular 4G</td>' in row
    assert "3 min ago" in row and "2 failed in the phone's last hour" in row


def test_a_later_ping_replaces_the_health_and_odd_values_are_left_out(
    live: LiveServer, at: list[datetime]
) -> None:
    alice = live.create_user("alice")

    async def scenario() -> None:
        device = await started(phone(live, alice))
        device.ping(HEALTH)
        await eventually(lambda: device.webhook_posts.count(("system:ping", 204)) == 1)
        at[0] = CLOCK_START + timedelta(minutes=1)
        odd = {"status": "sideways", "checks": {"battery:level": {"observedValue": 140},
               "battery:charging": {"observedValue": True}, "connection:status": "1"}}  # fmt: skip
        device.ping(odd)
        await eventually(lambda: device.webhook_posts.count(("system:ping", 204)) == 2)
        await device.stop()

    run(scenario)
    stored = database_rows(
        live.settings, "SELECT status, battery_level, battery_charging, transport FROM phone_health"
    )
    assert [tuple(row) for row in stored] == [(None, None, None, None)]


def test_health_in_words() -> None:
    now = CLOCK_START
    assert parse({"health": HEALTH}, now) == HealthRecord(now, "warn", 23, 5, 1, 2, 4, 2)
    assert parse(None, now) == HealthRecord(now)
    assert parse({"health": []}, now) == HealthRecord(now)

    assert battery_text(HealthRecord(now)) == "not reported"
    assert connection_text(HealthRecord(now)) == "not reported"
    assert battery_text(HealthRecord(now, battery_level=80, battery_charging=0)) == (
        "80 %, not charging"
    )
    assert battery_text(HealthRecord(now, battery_level=100, battery_charging=2)) == (
        "100 %, plugged in on AC"
    )
    assert battery_text(HealthRecord(now, battery_level=50, battery_charging=1)) == "50 %, charging"
    assert battery_text(HealthRecord(now, battery_level=50)) == "50 %"
    assert connection_text(HealthRecord(now, connection_status=0, transport=4)) == "no internet"
    assert connection_text(HealthRecord(now, connection_status=1, transport=4)) == ("online, Wi-Fi")
    assert connection_text(HealthRecord(now, connection_status=1, transport=6, cellular=5)) == (
        "online, Wi-Fi, cellular 5G"
    )
    assert connection_text(HealthRecord(now, connection_status=1, transport=2, cellular=1)) == (
        "online, cellular"
    )


def test_the_overview_is_the_first_page_and_draws_its_charts_without_script(
    live: LiveServer,
) -> None:
    alice = live.create_user("alice")
    dashboard = Dashboard(live)
    try:
        first = dashboard.http.get("/dashboard")
        assert first.headers["location"] == "/dashboard/login?next=%2Fdashboard"
        assert dashboard.sign_in(alice).headers["location"] == "/dashboard"
        assert dashboard.http.get("/dashboard/login").headers["location"] == "/dashboard"
        html = dashboard.http.get("/dashboard").text
    finally:
        dashboard.close()
    nav = html.split('aria-label="Dashboard"', 1)[1].split("</nav>", 1)[0]
    links = re.findall(r'<a href="([^"]+)" ?(aria-current="page")?>([^<]+)</a>', nav)
    assert links[0] == ("/dashboard", 'aria-current="page"', "Overview")
    assert [label for _, current, label in links if current] == ["Overview"]
    assert "<script" not in html.split("<main", 1)[1]
    assert html.count('role="img"') == 2 and "<title" in html.split("<svg", 1)[1]
    assert "All times are UTC" in html
    assert "no outcome yet" in html and "No phone is connected" in html
    assert "No failed message" in html
