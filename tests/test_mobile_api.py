"""The mobile API, call by call, as the Android app makes the calls."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients import TLS
from tests.conftest import Account, LiveServer, make_settings, running

MOBILE = "/api/mobile/v1"
PRIVATE_TOKEN = "a-private-token-of-some-length"
APP = {"User-Agent": "me.capcom.smsgateway/1.68.0"}


@pytest.fixture
def mobile_server(tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path / "data",
        private_token=PRIVATE_TOKEN,
        registration_rate_limit=5,
        sse_keepalive_seconds=0.5,
    )
    with running(settings) as live:
        yield live


@pytest.fixture
def owner(mobile_server: LiveServer) -> Account:
    return mobile_server.create_user("owner")


@pytest.fixture
def mobile(mobile_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=mobile_server.url + MOBILE, headers=APP, timeout=10, verify=TLS
    ) as client:
        yield client


def basic(account: Account) -> dict[str, str]:
    token = base64.b64encode(f"{account.login}:{account.password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


SIMS = [{"slotIndex": 0, "simNumber": 1, "phoneNumber": "*******4567", "carrierName": "****bile"}]


def register(mobile: httpx.Client, headers: dict[str, str], **body: Any) -> httpx.Response:
    payload = {"name": "Google/oriole", "simCards": SIMS} | body
    return mobile.post("/device", json=payload, headers=headers)


def test_sign_in_with_credentials_joins_the_account(
    mobile: httpx.Client, mobile_server: LiveServer, owner: Account
) -> None:
    response = register(mobile, basic(owner))
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "token", "login"}
    assert body["login"] == "owner"
    assert len(body["id"]) == 21
    with mobile_server.client(owner) as api:
        [device] = api.get("/devices").json()
    assert device["id"] == body["id"]
    assert device["name"] == "Google/oriole"
    assert device["simCards"] == SIMS
    assert device["connected"] is False


def test_wrong_credentials_do_not_register(mobile: httpx.Client, owner: Account) -> None:
    response = register(mobile, basic(Account("owner", "wrong password")))
    assert response.status_code == 401
    assert "message" in response.json()


def test_sign_up_with_the_private_token_creates_an_account(mobile: httpx.Client) -> None:
    response = register(mobile, bearer(PRIVATE_TOKEN))
    assert response.status_code == 201
    body = response.json()
    login = body["login"]
    assert len(login) == 6 and login.isalnum() and login == login.upper()
    assert len(body["password"]) == 14
    me = mobile.get("/device", headers=bearer(body["token"])).json()
    assert me["device"]["id"] == body["id"]


def test_sign_up_without_the_token_is_refused(mobile: httpx.Client) -> None:
    assert register(mobile, {}).status_code == 401
    assert register(mobile, bearer("not-the-private-token")).status_code == 401


def test_a_one_time_code_adds_a_second_phone_once(
    mobile: httpx.Client, mobile_server: LiveServer, owner: Account
) -> None:
    issued = mobile.get("/user/code", headers=basic(owner))
    assert issued.status_code == 200
    code = issued.json()["code"]
    assert len(code) == 6
    assert issued.json()["validUntil"].endswith("Z")
    first = register(mobile, {"Authorization": f"Code {code.upper()}"})
    assert first.status_code == 201
    assert first.json()["login"] == "owner"
    assert "password" not in first.json()
    assert register(mobile, {"Authorization": f"Code {code}"}).status_code == 401
    assert mobile.get("/user/code").status_code == 401


def test_registration_is_rate_limited_per_address(mobile: httpx.Client) -> None:
    answers = [register(mobile, {}).status_code for _ in range(6)]
    assert answers[:5] == [401] * 5
    assert answers[5] == 429
    limited = register(mobile, {})
    assert int(limited.headers["retry-after"]) >= 1


def test_device_self_info_without_and_with_a_token(mobile: httpx.Client, owner: Account) -> None:
    assert mobile.get("/device").json() == {"externalIp": "127.0.0.1"}
    assert mobile.get("/device", headers=bearer("unknown")).json() == {"externalIp": "127.0.0.1"}
    token = register(mobile, basic(owner)).json()["token"]
    me = mobile.get("/device", headers=bearer(token)).json()
    assert set(me["device"]) >= {"id", "name", "createdAt", "updatedAt", "lastSeen"}


def test_startup_update_stores_sims_and_refuses_another_id(
    mobile: httpx.Client, mobile_server: LiveServer, owner: Account
) -> None:
    device = register(mobile, basic(owner)).json()
    sims = [{"slotIndex": 1, "simNumber": 2}]
    headers = bearer(device["token"])
    ok = mobile.patch("/device", json={"id": device["id"], "simCards": sims}, headers=headers)
    assert ok.status_code == 204
    wrong = mobile.patch("/device", json={"id": "someone-else"}, headers=headers)
    assert wrong.status_code == 403
    unknown = mobile.patch("/device", json={"id": device["id"]}, headers=bearer("nope"))
    assert unknown.status_code == 401
    with mobile_server.client(owner) as api:
        assert api.get("/devices").json()[0]["simCards"] == sims


def test_every_phone_route_needs_a_device_token(mobile: httpx.Client) -> None:
    for method, path in [
        ("GET", "/message"), ("PATCH", "/message"), ("GET", "/messages"), ("GET", "/webhooks"),
        ("GET", "/settings"), ("GET", "/events"), ("PATCH", "/user/password"),
    ]:  # fmt: skip
        response = mobile.request(method, path, headers=bearer("not-a-token"))
        assert response.status_code == 401, path


def test_pull_gives_the_message_in_the_apps_format(
    mobile: httpx.Client, mobile_server: LiveServer, owner: Account
) -> None:
    device = register(mobile, basic(owner)).json()
    with mobile_server.client(owner) as api:
        body = {
            "phoneNumbers": ["+12025550100"], "textMessage": {"text": "Hi"}, "simNumber": 1,
            "priority": 100, "ttl": 3600,
        }  # fmt: skip
        sent = api.post("/messages", json=body).json()
    [item] = mobile.get(
        "/message", params={"order": "fifo"}, headers=bearer(device["token"])
    ).json()
    assert item["id"] == sent["id"]
    assert item["message"] == "Hi"
    assert item["textMessage"] == {"text": "Hi"}
    assert item["phoneNumbers"] == ["+12025550100"]
    assert item["state"] == "Pending"
    assert item["simNumber"] == 1 and item["priority"] == 100
    assert 3500 < item["ttl"] <= 3600
    assert item["withDeliveryReport"] is True
    for key in ("validUntil", "createdAt"):
        assert len(item[key]) == len("2026-07-14T03:11:12.345Z")
    assert "isEncrypted" not in item and "scheduleAt" not in item
    assert (
        mobile.get(
            "/message", params={"order": "random"}, headers=bearer(device["token"])
        ).status_code
        == 400
    )


def test_sim_numbers_the_phone_lacks_are_left_for_other_phones(
    mobile: httpx.Client, mobile_server: LiveServer, owner: Account
) -> None:
    single = register(mobile, basic(owner)).json()  # SIM 1 only
    dual = register(mobile, basic(owner), simCards=[*SIMS, {"slotIndex": 1, "simNumber": 2}]).json()
    with mobile_server.client(owner) as api:
        body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "x"}, "simNumber": 2}
        sent = api.post("/messages", json=body).json()
    assert mobile.get("/message", headers=bearer(single["token"])).json() == []
    assert [m["id"] for m in mobile.get("/message", headers=bearer(dual["token"])).json()] == [
        sent["id"]
    ]


def test_the_claim_cap_leaves_the_rest_for_others(
    mobile: httpx.Client, mobile_server: LiveServer, owner: Account
) -> None:
    first = register(mobile, basic(owner)).json()
    second = register(mobile, basic(owner)).json()
    with mobile_server.client(owner) as api:
        for i in range(15):
            api.post("/messages", json={"phoneNumbers": ["+12025550100"], "message": f"{i}"})
    taken = mobile.get("/message", headers=bearer(first["token"])).json()
    again = mobile.get("/message", headers=bearer(first["token"])).json()
    rest = mobile.get("/message", headers=bearer(second["token"])).json()
    assert len(taken) == 10
    assert [m["id"] for m in again] == [m["id"] for m in taken]  # held, not claimed twice
    assert len(rest) == 5
    assert not {m["id"] for m in taken} & {m["id"] for m in rest}


def report(mobile: httpx.Client, token: str, items: list[dict[str, Any]]) -> httpx.Response:
    return mobile.patch("/message", json=items, headers=bearer(token))


def snapshot(message_id: str, state: str, recipient: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": message_id,
        "state": state,
        "recipients": [{"phoneNumber": "+12025550100", "state": recipient} | extra],
        "states": {state: "2026-07-14T10:11:12.345+07:00"},
    }


def test_reports_are_idempotent_order_tolerant_and_never_go_backwards(
    mobile: httpx.Client, mobile_server: LiveServer, owner: Account
) -> None:
    device = register(mobile, basic(owner)).json()
    token = device["token"]
    with mobile_server.client(owner) as api:
        sent = api.post("/messages", json={"phoneNumbers": ["+12025550100"], "message": "x"}).json()
        mobile.get("/message", headers=bearer(token))
        assert (
            report(mobile, token, [snapshot(sent["id"], "Pending", "Pending")]).status_code == 204
        )
        assert api.get(f"/messages/{sent['id']}").json()["state"] == "Processed"
        report(mobile, token, [snapshot(sent["id"], "Delivered", "Delivered")])
        report(mobile, token, [snapshot(sent["id"], "Sent", "Sent")])  # late and out of order
        report(mobile, token, [snapshot(sent["id"], "Delivered", "Delivered")])  # duplicate
        state = api.get(f"/messages/{sent['id']}").json()
        assert state["state"] == "Delivered"
        assert state["recipients"][0] == {
            "phoneNumber": "+12025550100",
            "state": "Delivered",
            "error": None,
        }
        assert (
            state["states"]["Delivered"] == "2026-07-14T03:11:12.345Z"
        )  # the phone's time, in UTC
        assert state["deviceId"] == device["id"]


def test_a_failure_keeps_its_error(
    mobile: httpx.Client, mobile_server: LiveServer, owner: Account
) -> None:
    token = register(mobile, basic(owner)).json()["token"]
    with mobile_server.client(owner) as api:
        sent = api.post("/messages", json={"phoneNumbers": ["+12025550100"], "message": "x"}).json()
        mobile.get("/message", headers=bearer(token))
        error = "Send result: RESULT_ERROR_GENERIC_FAILURE (Generic failure cause)"
        report(mobile, token, [snapshot(sent["id"], "Failed", "Failed", error=error)])
        report(mobile, token, [snapshot(sent["id"], "Delivered", "Delivered")])
        state = api.get(f"/messages/{sent['id']}").json()
    assert state["state"] == "Failed"
    assert state["recipients"][0]["error"] == error


def test_reports_about_unknown_or_foreign_messages_are_ignored(
    mobile: httpx.Client, mobile_server: LiveServer, owner: Account
) -> None:
    mine = register(mobile, basic(owner)).json()
    other = register(mobile, basic(owner)).json()
    with mobile_server.client(owner) as api:
        sent = api.post("/messages", json={"phoneNumbers": ["+12025550100"], "message": "x"}).json()
        mobile.get("/message", headers=bearer(mine["token"]))
        assert (
            report(mobile, other["token"], [snapshot(sent["id"], "Failed", "Failed")]).status_code
            == 204
        )
        assert (
            report(mobile, mine["token"], [snapshot("no-such-id", "Sent", "Sent")]).status_code
            == 204
        )
        assert api.get(f"/messages/{sent['id']}").json()["state"] == "Pending"


@pytest.mark.parametrize(
    "items",
    [
        [{"id": "x", "state": "Sent", "recipients": []}],
        [{"id": "x", "state": "Bogus", "recipients": [{"phoneNumber": "+1", "state": "Sent"}]}],
        [
            {
                "id": "x",
                "state": "Sent",
                "recipients": [{"phoneNumber": "+1", "state": "Sent"}],
                "states": {"Sent": "never"},
            }
        ],
        {"id": "x"},
    ],
)
def test_malformed_reports_are_400(mobile: httpx.Client, owner: Account, items: Any) -> None:
    token = register(mobile, basic(owner)).json()["token"]
    response = mobile.patch("/message", json=items, headers=bearer(token))
    assert response.status_code == 400
    assert "message" in response.json()


def test_phone_password_change_needs_the_current_password(
    mobile: httpx.Client, mobile_server: LiveServer, owner: Account
) -> None:
    token = register(mobile, basic(owner)).json()["token"]
    wrong = {"currentPassword": "nope", "newPassword": "a new password, long"}
    assert mobile.patch("/user/password", json=wrong, headers=bearer(token)).status_code == 401
    short = {"currentPassword": owner.password, "newPassword": "short"}
    assert mobile.patch("/user/password", json=short, headers=bearer(token)).status_code == 400
    good = {"currentPassword": owner.password, "newPassword": "a new password, long"}
    assert mobile.patch("/user/password", json=good, headers=bearer(token)).status_code == 204
    with mobile_server.client(Account("owner", "a new password, long")) as api:
        assert api.get("/messages").status_code == 200


def test_settings_and_webhooks_for_the_phone(mobile: httpx.Client, owner: Account) -> None:
    token = register(mobile, basic(owner)).json()["token"]
    assert mobile.get("/settings", headers=bearer(token)).json() == {
        "gateway": {"notification_channel": "SSE_ONLY"}
    }
    hooks = mobile.get("/webhooks", headers=bearer(token)).json()  # smsgw's own endpoints
    assert {h["event"] for h in hooks} == {
        "sms:received",
        "sms:data-received",
        "mms:received",
        "mms:downloaded",
        "system:ping",  # the phone's health, for the overview
    }
    assert all("/api/mobile/v1/hooks/" in h["url"] for h in hooks)


def read_frames(lines: Iterator[str], count: int) -> list[str]:
    """The next `count` frames of an event stream (one iterator per stream: closing an
    iterator of httpx's would close the stream)."""
    frames: list[str] = []
    block: list[str] = []
    for line in lines:
        if line == "":
            if block:
                frames.append("\n".join(block))
            block = []
            if len(frames) >= count:
                break
        else:
            block.append(line)
    return frames


def next_event(lines: Iterator[str], within: float = 20) -> str:
    """The next frame that is not a keep-alive (one may come first when the machine is
    slow: they are sent whenever a stream is idle for a moment); fails after `within`
    seconds of keep-alives only."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        [frame] = read_frames(lines, 1)
        if frame != ":keepalive":
            return frame
    raise AssertionError(f"no event in {within} s, only keep-alives")


def test_events_stream_syncs_first_then_wakes_on_enqueue_and_keeps_alive(
    mobile_server: LiveServer, mobile: httpx.Client, owner: Account
) -> None:
    token = register(mobile, basic(owner)).json()["token"]
    url = mobile_server.url + MOBILE + "/events"
    with httpx.stream("GET", url, headers=bearer(token), timeout=10, verify=TLS) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = read_frames(lines, 2)
        assert first == ["event: WebhooksUpdated\ndata: null", "event: SettingsUpdated\ndata: null"]
        with mobile_server.client(owner) as api:
            api.post("/messages", json={"phoneNumbers": ["+12025550100"], "message": "x"})
            assert api.get("/devices").json()[0]["connected"] is True
        assert next_event(lines) == "event: MessageEnqueued\ndata: null"
        started = time.monotonic()
        assert read_frames(lines, 1) == [":keepalive"]
        assert time.monotonic() - started < 5


def test_a_second_stream_of_the_same_phone_gets_events_too(
    mobile_server: LiveServer, mobile: httpx.Client, owner: Account
) -> None:
    token = register(mobile, basic(owner)).json()["token"]
    url = mobile_server.url + MOBILE + "/events"
    with (
        httpx.stream("GET", url, headers=bearer(token), timeout=10, verify=TLS) as one,
        httpx.stream("GET", url, headers=bearer(token), timeout=10, verify=TLS) as two,
    ):
        one_lines, two_lines = one.iter_lines(), two.iter_lines()
        read_frames(one_lines, 2)
        assert read_frames(two_lines, 1) == [":keepalive"]
        with mobile_server.client(owner) as api:
            sent = api.post(
                "/messages", json={"phoneNumbers": ["+12025550100"], "message": "x"}
            ).json()
        assert next_event(one_lines) == "event: MessageEnqueued\ndata: null"
        assert next_event(two_lines) == "event: MessageEnqueued\ndata: null"
        mobile.get("/message", headers=bearer(token))
        with mobile_server.client(owner) as api:
            assert api.delete(f"/messages/{sent['id']}").json()["state"] == "Cancelling"
        expected = "event: MessageCancelled\ndata: " + json.dumps(
            {"messageId": sent["id"]}, separators=(",", ":")
        )
        assert next_event(one_lines) == expected


def test_hosted_layout_prefix_serves_the_mobile_api(
    mobile_server: LiveServer, owner: Account
) -> None:
    with httpx.Client(base_url=mobile_server.url + "/mobile/v1", verify=TLS) as client:
        assert register(client, basic(owner)).status_code == 201
