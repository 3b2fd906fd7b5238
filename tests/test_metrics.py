"""/metrics: Prometheus text that moves with traffic (scrape, act, scrape, compare)."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.clients import TLS
from tests.conftest import Account, LiveServer, make_settings, running
from tests.fakes.phone import SimulatedPhone
from tests.test_phones import MOBILE, _true, eventually, run

API = "/api/3rdparty/v1"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: LiveServer, headers: dict[str, str] | None = None) -> Samples:
    response = httpx.get(server.url + "/metrics", headers=headers, timeout=20, verify=TLS)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, method: str, route: str, status: str) -> float:
    return value(samples, "smsgw_http_requests_total", method=method, route=route, status=status)


def test_requests_are_counted_by_route_template_and_messages_by_state(
    server: LiveServer, api: httpx.Client
) -> None:
    before = scrape(server)
    ids = []
    for i in range(3):
        response = api.post(
            "/messages", json={"phoneNumbers": ["+12025550100"], "textMessage": {"text": f"m{i}"}}
        )
        assert response.status_code == 200
        ids.append(response.json()["id"])
    for message_id in ids:
        assert api.get(f"/messages/{message_id}").status_code == 200
    assert api.get("/messages/no-such-id").status_code == 404
    assert api.delete(f"/messages/{ids[0]}").status_code == 200
    after = scrape(server)

    def moved(method: str, route: str, status: str) -> float:
        return requests(after, method, route, status) - requests(before, method, route, status)

    assert moved("POST", API + "/messages", "200") == 3
    assert moved("GET", API + "/messages/{id}", "200") == 3
    assert moved("GET", API + "/messages/{id}", "404") == 1
    assert moved("DELETE", API + "/messages/{id}", "200") == 1
    count = "smsgw_http_request_duration_seconds_count"
    assert (
        value(after, count, method="POST", route=API + "/messages")
        - value(before, count, method="POST", route=API + "/messages")
        == 3
    )
    assert not any(message_id in str(key) for key in after for message_id in ids)
    assert value(after, "smsgw_messages", state="Pending") == 2
    assert value(after, "smsgw_messages", state="Cancelled") == 1


def test_unmatched_paths_share_one_series(server: LiveServer) -> None:
    before = scrape(server)
    for i in range(3):
        httpx.get(f"{server.url}/no/such/path/{i}", verify=TLS)
    after = scrape(server)
    assert (
        requests(after, "GET", "<unmatched>", "404") - requests(before, "GET", "<unmatched>", "404")
        == 3
    )


def test_connected_phones_and_claims_follow_a_phone(server: LiveServer, alice: Account) -> None:
    async def scenario() -> None:
        assert value(scrape(server), "smsgw_phones_connected") == 0
        device = SimulatedPhone(
            server.url + MOBILE, login=(alice.login, alice.password), paused=True
        )
        await device.start()
        await eventually(lambda: _true(device.sse_opens > 0))
        samples = scrape(server)
        assert value(samples, "smsgw_phones_connected") == 1
        assert value(samples, "smsgw_event_streams") == 1
        assert value(samples, "smsgw_messages_claimed") == 0
        auth = (alice.login, alice.password)
        async with httpx.AsyncClient(base_url=server.api, auth=auth, verify=TLS) as client:
            body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "held"}}
            message_id = (await client.post("/messages", json=body)).json()["id"]
        await eventually(lambda: _true(message_id in device.messages))
        assert value(scrape(server), "smsgw_messages_claimed") == 1
        await device.kill()

        async def gone() -> bool:
            return value(scrape(server), "smsgw_phones_connected") == 0

        await eventually(gone)

    run(scenario)


def test_a_metrics_token_closes_the_page_to_others(tmp_path: Path) -> None:
    token = "metrics-token-0123456789"
    with running(make_settings(tmp_path / "data", metrics_token=token)) as live:
        anonymous = httpx.get(live.url + "/metrics", verify=TLS)
        assert anonymous.status_code == 401
        assert anonymous.json() == {"message": "Unauthorized"}
        wrong = httpx.get(
            live.url + "/metrics", headers={"Authorization": "Bearer nope"}, verify=TLS
        )
        assert wrong.status_code == 401
        accented = [(b"authorization", "Bearer \u00e9t\u00e9".encode("latin-1"))]
        assert httpx.get(live.url + "/metrics", headers=accented, verify=TLS).status_code == 401
        samples = scrape(live, {"Authorization": f"Bearer {token}"})
        assert ("smsgw_phones_connected", frozenset()) in samples
