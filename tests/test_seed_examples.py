"""Every example of the seed document (reference/seed-sms-api.txt), reproduced literally."""

from __future__ import annotations

import re
import shutil
import subprocess

import httpx
import pytest

from tests.conftest import Account, LiveServer

# The seed's ids are UUID strings (its example is of version 4; smsgw makes version 7 ones,
# which sort by time: docs/api.md). Any RFC 9562 version, lowercase, with the RFC variant.
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_example_sends_an_sms(server: LiveServer, alice: Account) -> None:
    result = subprocess.run(
        [
            "curl", "-s", "-w", "\n%{http_code}", "-X", "POST", f"{server.api}/messages",
            "-u", f"{alice.login}:{alice.password}",
            "-H", "Content-Type: application/json",
            "-d", '{"phoneNumbers":["+12025550100"],"textMessage":{"text":"Hello!"}}',
        ],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "200"
    assert UUID.match(httpx.Response(200, content=body).json()["id"])


def test_queue_an_sms_answers_200_with_the_id(api: httpx.Client) -> None:
    response = api.post(
        "/messages",
        json={
            "phoneNumbers": ["+12025550100"],
            "textMessage": {"text": "Hello from API"},
            "withDeliveryReport": True,
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert UUID.match(body["id"])
    assert body["state"] == "Pending"
    assert body["recipients"] == [
        {"phoneNumber": "+12025550100", "state": "Pending", "error": None}
    ]
    assert response.headers["location"] == f"/api/3rdparty/v1/messages/{body['id']}"


def test_list_messages_with_skip_and_limit(api: httpx.Client) -> None:
    sent = api.post(
        "/messages", json={"phoneNumbers": ["+12025550100"], "textMessage": {"text": "Hi"}}
    ).json()
    response = api.get("/messages?skip=0&limit=20")
    assert response.status_code == 200
    assert response.headers["x-total-count"] == "1"
    [item] = response.json()
    assert item["id"] == sent["id"]
    assert item["state"] == "Pending"
    assert TIMESTAMP.match(item["createdAt"])


def test_get_full_status_of_one_message(api: httpx.Client) -> None:
    sent = api.post(
        "/messages", json={"phoneNumbers": ["+12025550100"], "textMessage": {"text": "Hi"}}
    ).json()
    response = api.get(f"/messages/{sent['id']}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == sent["id"]
    assert body["state"] == "Pending"
    assert body["recipients"] == [
        {"phoneNumber": "+12025550100", "state": "Pending", "error": None}
    ]
    assert TIMESTAMP.match(body["states"]["Pending"])
    assert body["textMessage"] == {"text": "Hi"}


def test_the_hosted_layout_prefix_serves_the_same_api(server: LiveServer, alice: Account) -> None:
    with server.client(alice, prefix="/3rdparty/v1") as client:
        sent = client.post(
            "/messages", json={"phoneNumbers": ["+12025550100"], "textMessage": {"text": "x"}}
        )
        assert sent.status_code == 200
        assert sent.headers["location"] == f"/3rdparty/v1/messages/{sent.json()['id']}"
        assert client.get(f"/messages/{sent.json()['id']}").status_code == 200
