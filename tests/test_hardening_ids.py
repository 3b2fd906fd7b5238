"""A client's own id (a message's, a webhook's) is a URL path segment: one the routes that
read it can reach. Others are refused with 400 instead of being stored unreachable."""

from __future__ import annotations

import json

import httpx
import pytest

from smsgw.domain.ids import CLIENT_ID_PATTERN, CLIENT_ID_RULE
from tests.clients import TLS
from tests.conftest import LiveServer

SEND = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "hello"}}
HOOK = {"url": "https://example.com/hook", "event": "sms:received"}
#: Every character allowed besides letters and digits.
PUNCTUATED = "a-._~!$&'()*+,;=:@z"


@pytest.mark.parametrize("bad", ["a/b", ".", "..", "a?b", "a#b", "a%2Fb", "a b", "a\\b", "é"])
def test_a_message_id_that_is_no_path_segment_is_refused(api: httpx.Client, bad: str) -> None:
    answer = api.post("/messages", json={**SEND, "id": bad})
    assert answer.status_code == 400
    assert answer.json() == {"message": f"id: {CLIENT_ID_RULE}"}
    assert api.get("/messages").json() == []


@pytest.mark.parametrize("good", [PUNCTUATED, "...", ".hidden", "order-42", "a" * 36])
def test_an_allowed_message_id_can_be_read_and_cancelled(api: httpx.Client, good: str) -> None:
    assert api.post("/messages", json={**SEND, "id": good}).status_code == 200
    assert api.get(f"/messages/{good}").json()["id"] == good
    assert api.delete(f"/messages/{good}").json()["state"] == "Cancelled"


def test_a_webhook_id_that_is_no_path_segment_is_refused(api: httpx.Client) -> None:
    for bad in ("a/b", "..", "a?b"):
        answer = api.post("/webhooks", json={**HOOK, "id": bad})
        assert answer.status_code == 400
        assert answer.json() == {"message": f"id: {CLIENT_ID_RULE}"}
    assert api.get("/webhooks").json() == []


def test_an_allowed_webhook_id_can_be_deleted(api: httpx.Client) -> None:
    assert api.post("/webhooks", json={**HOOK, "id": PUNCTUATED}).status_code == 201
    assert [hook["id"] for hook in api.get("/webhooks").json()] == [PUNCTUATED]
    assert api.delete(f"/webhooks/{PUNCTUATED}").status_code == 204
    assert api.get("/webhooks").json() == []
    generated = api.post("/webhooks", json={**HOOK, "id": ""}).json()["id"]
    assert generated and api.delete(f"/webhooks/{generated}").status_code == 204


def test_the_published_schema_states_the_id_pattern(server: LiveServer) -> None:
    schemas = httpx.get(server.url + "/openapi.json", verify=TLS).json()["components"]["schemas"]
    for body in ("SendMessageRequest", "WebhookIn"):
        text = json.dumps(schemas[body]["properties"]["id"])
        assert json.dumps(CLIENT_ID_PATTERN)[1:-1] in text, body
