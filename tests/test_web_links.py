"""The carrier links an account sees: the dashboard's links page (add through a form, state,
queue depth, recent parts, delete), `GET /links` of the 3rd-party API and `/metrics` per
link; through a real running smsgw against the npm `smpp` simulator (tests/fakes/smsc.py)
or a port where nothing listens (a link that stays down)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsgw.links.schemas import BIND_MODE_RULE, HOST_RULE, NAME_RULE
from tests.clients import TLS
from tests.conftest import Account, LiveServer, free_port, running
from tests.fakes.smsc import PASSWORD, USER, Smsc, wait_until
from tests.test_metrics import scrape, value
from tests.web_support import Dashboard, alerts_of
from tests.webhook_support import hub_settings

PAGE = "/dashboard/links"
NUMBER = "+12025550100"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """A server whose binds give up after 2 s (a refused bind is reported no sooner)."""
    with running(hub_settings(tmp_path / "data", link_connect_timeout_seconds=2)) as server:
        yield server


@pytest.fixture
def alice(live: LiveServer) -> Account:
    return live.create_user("alice")


@pytest.fixture
def dashboard(live: LiveServer, alice: Account) -> Iterator[Dashboard]:
    signed_in = Dashboard(live)
    assert signed_in.sign_in(alice).status_code == 303
    yield signed_in
    signed_in.close()


@pytest.fixture
def api(live: LiveServer, alice: Account) -> Iterator[httpx.Client]:
    with live.client(alice) as client:
        yield client


def form(smsc_port: int, **changes: str) -> dict[str, str]:
    fields = {
        "name": "Carrier A", "host": "127.0.0.1", "port": str(smsc_port), "system_id": USER,
        "password": PASSWORD, "system_type": "", "source_addr": "SMSGW", "source_ton": "5",
        "source_npi": "0", "throughput": "50", "window": "10", "data_coding": "0",
        "bind_mode": "transceiver",
    }  # fmt: skip
    return fields | changes


def add(dashboard: Dashboard, smsc_port: int, **changes: str) -> httpx.Response:
    return dashboard.post(PAGE, form(smsc_port, **changes), page=PAGE)


def links_of(api: httpx.Client) -> list[dict[str, Any]]:
    response = api.get("/links")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def the_link(api: httpx.Client) -> dict[str, Any]:
    [link] = links_of(api)
    return link


def row_of(html: str, link_id: str) -> str:
    found = re.search(rf'<tr data-link-id="{link_id}">(.*?)</tr>', html, re.S)
    assert found is not None, f"no row of {link_id}"
    cells = re.sub(r"<br>|</td>", " ", found.group(1))
    return " ".join(re.sub(r"<[^>]+>", "", cells).split())


def send(api: httpx.Client, text: str = "Hello via the link") -> str:
    body = {"phoneNumbers": [NUMBER], "textMessage": {"text": text}}
    response = api.post("/messages", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def test_a_link_added_on_the_page_binds_sends_and_shows_its_figures_but_never_its_password(
    live: LiveServer, dashboard: Dashboard, api: httpx.Client, smsc: Smsc
) -> None:
    assert "You have no carrier link." in dashboard.http.get(PAGE).text
    added = add(dashboard, smsc.port)
    assert (added.status_code, added.headers["location"]) == (303, PAGE + "?notice=added")
    link_id = the_link(api)["id"]
    wait_until(lambda: the_link(api)["state"] == "bound", what="the link bound")

    message_id = send(api)
    wait_until(
        lambda: api.get(f"/messages/{message_id}").json()["state"] == "Delivered",
        what="delivered through the link",
    )
    wait_until(lambda: the_link(api)["recent"]["delivered"] == 1, what="the receipt counted")

    page = dashboard.http.get(PAGE)
    assert page.status_code == 200
    row = row_of(page.text, link_id)
    assert "Carrier A" in row and "127.0.0.1:" + str(smsc.port) in row
    assert f"system_id {USER}" in row and "from SMSGW" in row
    assert "bound" in row and "up to 50/s" in row and "binds transceiver" in row
    assert "1 part in the last minute" in row
    assert "0 waiting, 0 planned, 0 in flight" in row
    assert "1 submitted; receipts: 1 delivered, 0 undelivered" in row
    assert PASSWORD not in page.text
    assert 'type="password"' in page.text
    assert '<a href="/dashboard/links" aria-current="page">Carrier links</a>' in page.text

    link = the_link(api)
    assert "password" not in {key.lower() for key in link} and PASSWORD not in str(link)
    expected = {
        "id": link_id, "name": "Carrier A", "kind": "smpp", "host": "127.0.0.1",
        "port": smsc.port, "systemId": USER, "systemType": "", "source": "SMSGW",
        "sourceTon": 5, "sourceNpi": 0, "throughput": 50, "window": 10, "dataCoding": 0,
        "bindMode": "transceiver", "state": "bound", "detail": None,
        "queue": {"waiting": 0, "planned": 0, "inFlight": 0},
    }  # fmt: skip
    assert {key: link[key] for key in expected} == expected
    recent = link["recent"]
    assert (recent["submitted"], recent["accepted"], recent["delivered"]) == (1, 0, 1)
    assert (recent["undelivered"], recent["rejected"], recent["noAnswer"]) == (0, 0, 0)
    one = api.get(f"/links/{link_id}").json()
    assert one["recent"].pop("since") >= recent.pop("since")  # 24 hours before each answer
    assert one == link


def test_a_refused_bind_is_named_on_the_page(
    dashboard: Dashboard, api: httpx.Client, smsc: Smsc
) -> None:
    assert add(dashboard, smsc.port, password="wrong").status_code == 303
    link_id = the_link(api)["id"]
    # The page is read until it says so: between the refused binds the link is `connecting`
    # again, and on a busy machine an attempt may first time out connecting.
    page = {"row": ""}

    def refused_on_the_page() -> bool:
        page["row"] = row_of(dashboard.http.get(PAGE).text, link_id)
        return "down: connected to 127.0.0.1:" in page["row"]

    wait_until(refused_on_the_page, within=90, what="the refused bind on the page")
    assert "but the SMSC did not accept the bind (check system_id, password and" in page["row"]
    wait_until(
        lambda: "did not accept the bind" in str(the_link(api)["detail"]),
        within=90, what="the refused bind in the API",
    )  # fmt: skip


def test_queue_depth_counts_the_accounts_messages_the_link_could_take(
    live: LiveServer, dashboard: Dashboard, api: httpx.Client
) -> None:
    """No phone, and the link cannot connect: the account's messages wait, and say so."""
    closed = free_port()
    assert add(dashboard, closed).status_code == 303
    link_id = the_link(api)["id"]
    wait_until(lambda: the_link(api)["state"] == "down", what="the link down")
    for _ in range(2):
        send(api)
    later = {"phoneNumbers": [NUMBER], "textMessage": {"text": "later"},
             "scheduleAt": "2099-01-01T00:00:00Z"}  # fmt: skip
    assert api.post("/messages", json=later).status_code == 200
    other = {"phoneNumbers": [NUMBER], "textMessage": {"text": "pinned"}, "deviceId": link_id}
    assert api.post("/messages", json=other).status_code == 200

    # Read while the link is down: between its attempts it is `connecting` again (and the
    # sends above may take longer than its pause on a busy machine).
    seen: dict[str, Any] = {}

    def down() -> bool:
        seen["link"] = the_link(api)
        return bool(seen["link"]["state"] == "down")

    wait_until(down, within=90, what="the link down again")
    assert seen["link"]["queue"] == {"waiting": 3, "planned": 0, "inFlight": 0}
    assert str(seen["link"]["detail"]).startswith(f"cannot connect to 127.0.0.1:{closed}")

    def down_on_the_page() -> bool:
        seen["row"] = row_of(dashboard.http.get(PAGE).text, link_id)
        return f"down: cannot connect to 127.0.0.1:{closed}" in seen["row"]

    wait_until(down_on_the_page, within=90, what="the link down on the page")
    assert "3 waiting, 0 planned, 0 in flight" in seen["row"]


def test_the_form_names_every_error_on_its_field_and_never_echoes_the_password(
    dashboard: Dashboard, api: httpx.Client
) -> None:
    typed = form(
        2775, host=" ", port="abc", system_id="x" * 16, password="toolong99",
        window="0", source_ton="9", throughput="1.5", name="n" * 129, bind_mode="tx",
    )  # fmt: skip
    refused = dashboard.post(PAGE, typed, page=PAGE)

    assert refused.status_code == 400
    assert alerts_of(refused.text) == ["The link was not added: 9 fields to correct below."]
    errors = re.findall(r'<p class="field-error" id="([^"]+)">([^<]+)</p>', refused.text)
    assert errors == [
        ("l-name-error", "Name: at most 128 characters"),
        ("l-host-error", "Host: required"),
        ("l-port-error", "Port: a whole number from 1 to 65535"),
        ("l-system-id-error", "System ID: at most 15 characters (SMPP 3.4)"),
        ("l-password-error", "Password: at most 8 characters (SMPP 3.4)"),
        ("l-ton-error", "Source TON: a whole number from 0 to 6"),
        ("l-throughput-error", "Throughput (per second): a whole number from 1 to 100000"),
        ("l-window-error", "Window: a whole number from 1 to 1000"),
        ("l-bind-mode-error", f"Bind mode: {BIND_MODE_RULE}"),
    ]
    assert 'id="l-port" name="port" type="text" value="abc"' in refused.text
    assert 'aria-invalid="true"' in refused.text
    assert "toolong99" not in refused.text
    assert links_of(api) == []

    printable = dashboard.post(PAGE, form(2775, password="tab\there"), page=PAGE)
    assert printable.status_code == 400
    assert "Password: printable ASCII characters only" in printable.text


def test_a_number_of_thousands_of_digits_or_a_name_with_escapes_is_named_not_a_500(
    dashboard: Dashboard, api: httpx.Client
) -> None:
    """(A port of more than 4,300 digits was a 500: int() refuses such strings.)"""
    typed = form(2775, port="9" * 5000, window="9" * 19, name="\x1b[2Jgone", host="smpp://x:1")
    refused = dashboard.post(PAGE, typed, page=PAGE)

    assert refused.status_code == 400
    errors = re.findall(r'<p class="field-error" id="([^"]+)">([^<]+)</p>', refused.text)
    assert errors == [
        ("l-name-error", f"Name: {NAME_RULE}"),
        ("l-host-error", f"Host: {HOST_RULE}"),
        ("l-port-error", "Port: a whole number from 1 to 65535"),
        ("l-window-error", "Window: a whole number from 1 to 1000"),
    ]
    assert links_of(api) == []


def test_forms_without_this_sessions_token_are_refused(
    dashboard: Dashboard, api: httpx.Client
) -> None:
    refused = dashboard.http.post(PAGE, data=form(free_port()))
    assert refused.status_code == 403 and "This form has expired" in refused.text
    assert links_of(api) == []
    assert add(dashboard, free_port()).status_code == 303
    link_id = the_link(api)["id"]
    forged = dashboard.http.post(f"{PAGE}/{link_id}/delete", data={"csrf": "forged"})
    assert forged.status_code == 403
    assert [link["id"] for link in links_of(api)] == [link_id]

    deleted = dashboard.post(f"{PAGE}/{link_id}/delete", page=PAGE)
    assert (deleted.status_code, deleted.headers["location"]) == (303, PAGE + "?notice=deleted")
    assert links_of(api) == []
    assert "Link deleted." in dashboard.http.get(PAGE + "?notice=deleted").text


def test_another_users_link_is_neither_shown_nor_deleted_nor_read(
    live: LiveServer, dashboard: Dashboard, api: httpx.Client
) -> None:
    bob = live.create_user("bob")
    bobs = Dashboard(live)
    try:
        assert bobs.sign_in(bob).status_code == 303
        assert add(bobs, free_port(), name="Bob's carrier").status_code == 303
    finally:
        bobs.close()
    with live.client(bob) as bob_api:
        bob_link = the_link(bob_api)["id"]

        assert "Bob's carrier" not in dashboard.http.get(PAGE).text
        assert links_of(api) == []
        assert api.get(f"/links/{bob_link}").status_code == 404
        assert api.get(f"/links/{bob_link}").json() == {"message": "link not found"}
        deleted = dashboard.post(f"{PAGE}/{bob_link}/delete", page=PAGE)
        assert deleted.status_code == 404 and "No such link of yours." in deleted.text
        assert [link["id"] for link in links_of(bob_api)] == [bob_link]


def test_reading_links_takes_the_devices_list_scope(live: LiveServer, api: httpx.Client) -> None:
    def bearer(scopes: list[str]) -> dict[str, str]:
        response = api.post("/auth/token", json={"scopes": scopes})
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    with httpx.Client(base_url=live.api, timeout=30, verify=TLS) as anonymous:
        assert anonymous.get("/links").status_code == 401
        assert anonymous.get("/links", headers=bearer(["devices:list"])).json() == []
        refused = anonymous.get("/links", headers=bearer(["messages:send"]))
        assert refused.status_code == 403


def test_metrics_show_each_link_up_its_submits_receipts_and_queue(
    live: LiveServer, dashboard: Dashboard, api: httpx.Client, smsc: Smsc
) -> None:
    assert add(dashboard, smsc.port).status_code == 303
    assert add(dashboard, free_port(), name="Dead end").status_code == 303
    up, down = (link["id"] for link in links_of(api))
    wait_until(lambda: the_link_states(api) == ["bound", "down"], what="one up, one down")
    smsc.throttle(2)  # the first two submit_sm are answered "busy": the part goes again
    message_id = send(api)
    wait_until(
        lambda: api.get(f"/messages/{message_id}").json()["state"] == "Delivered",
        what="delivered",
    )
    wait_until(
        lambda: value(scrape(live), "smsgw_link_receipts_total", link=up, outcome="delivered") == 1,
        what="the receipt counted",
    )

    samples = scrape(live)
    assert value(samples, "smsgw_link_up", link=up) == 1
    assert value(samples, "smsgw_link_up", link=down) == 0
    assert ("smsgw_link_up", frozenset({("link", down)})) in samples
    assert value(samples, "smsgw_link_submitted_total", link=up, answer="accepted") == 1
    assert value(samples, "smsgw_link_submitted_total", link=up, answer="busy") == 2
    assert value(samples, "smsgw_link_submitted_total", link=up, answer="refused") == 0
    assert value(samples, "smsgw_link_submitted_total", link=down, answer="accepted") == 0
    assert value(samples, "smsgw_link_receipts_total", link=up, outcome="undelivered") == 0
    for name in ("queue_depth", "parts_planned", "parts_in_flight"):
        assert value(samples, f"smsgw_link_{name}", link=up) == 0
        assert (f"smsgw_link_{name}", frozenset({("link", down)})) in samples

    pinned = {"phoneNumbers": [NUMBER], "textMessage": {"text": "wait"}, "deviceId": down}
    assert api.post("/messages", json=pinned).status_code == 200
    samples = scrape(live)
    assert value(samples, "smsgw_link_queue_depth", link=down) == 1
    assert value(samples, "smsgw_link_queue_depth", link=up) == 0

    assert dashboard.post(f"{PAGE}/{down}/delete", page=PAGE).status_code == 303
    assert ("smsgw_link_up", frozenset({("link", down)})) not in scrape(live)


def the_link_states(api: httpx.Client) -> list[str]:
    return [link["state"] for link in links_of(api)]
