"""Upstream's list and ttl rules: a `limit` over 100 is clamped (and said), `ttl: 0` is unset."""

from __future__ import annotations

import httpx

from tests.clients import TLS
from tests.test_messages_api import send


def test_a_limit_over_100_is_served_as_100_and_said(api: httpx.Client) -> None:
    for i in range(101):
        send(api, f"m{i}")
    for asked in ("101", "500", "99999999999999999999999"):
        page = api.get("/messages", params={"limit": asked})
        assert page.status_code == 200, page.text
        assert len(page.json()) == 100
        assert page.headers["x-limit"] == "100"
        assert page.headers["x-total-count"] == "101"
    assert api.get("/messages", params={"limit": 7}).headers["x-limit"] == "7"


def test_the_published_schema_says_a_large_limit_is_clamped(api: httpx.Client) -> None:
    schema = httpx.get(str(api.base_url).split("/api/")[0] + "/openapi.json", verify=TLS).json()
    parameters = schema["paths"]["/api/3rdparty/v1/messages"]["get"]["parameters"]
    limit = next(p for p in parameters if p["name"] == "limit")
    assert "maximum" not in limit["schema"]
    assert "100" in limit["description"]


def test_ttl_zero_means_not_set(api: httpx.Client) -> None:
    message = send(api, ttl=0)
    stored = api.get(f"/messages/{message['id']}").json()
    assert stored.get("validUntil") is None
    # Not set, so it does not conflict with an explicit validUntil either.
    both = send(api, ttl=0, validUntil="2099-01-01T00:00:00.000Z")
    assert api.get(f"/messages/{both['id']}").json()["validUntil"].startswith("2099-01-01")


def test_a_small_ttl_is_honoured_and_a_negative_one_refused(api: httpx.Client) -> None:
    message = send(api, ttl=1)
    assert api.get(f"/messages/{message['id']}").json()["validUntil"] is not None
    body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "x"}, "ttl": -1}
    response = api.post("/messages", json=body)
    assert response.status_code == 400
    assert "ttl" in response.json()["message"]
