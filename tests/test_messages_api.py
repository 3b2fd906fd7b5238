"""GET/DELETE /messages: listing, filters, paging, owner isolation, idempotency, cancel, auth."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from smsgw.domain import clock
from tests.clients import TLS
from tests.conftest import Account, LiveServer, make_settings, running


def send(api: httpx.Client, text: str = "Hello", **extra: object) -> dict[str, object]:
    body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": text}} | extra
    response = api.post("/messages", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def ids(response: httpx.Response) -> list[object]:
    return [item["id"] for item in response.json()]


def test_list_is_newest_first_and_pages_with_skip_or_offset(api: httpx.Client) -> None:
    sent = [send(api, f"m{i}")["id"] for i in range(5)]
    assert ids(api.get("/messages")) == sent[::-1]
    assert ids(api.get("/messages", params={"skip": 1, "limit": 2})) == sent[3:1:-1]
    assert ids(api.get("/messages", params={"offset": 1, "limit": 2})) == sent[3:1:-1]
    assert ids(api.get("/messages", params={"sort": "created_at", "limit": 2})) == sent[:2]
    page = api.get("/messages", params={"skip": 4, "limit": 20})
    assert ids(page) == sent[:1]
    assert page.headers["x-total-count"] == "5"


def test_limit_defaults_to_20_and_refuses_below_1(api: httpx.Client) -> None:
    for i in range(21):
        send(api, f"m{i}")
    assert len(api.get("/messages").json()) == 20
    assert api.get("/messages", params={"limit": 100}).status_code == 200
    for bad in ("0", "-1", "x"):
        response = api.get("/messages", params={"limit": bad})
        assert response.status_code == 400
        assert response.json()["message"].startswith("limit: ")


def test_skip_and_offset_must_agree(api: httpx.Client) -> None:
    response = api.get("/messages", params={"skip": 1, "offset": 2})
    assert response.status_code == 400
    assert "skip and offset" in response.json()["message"]


def test_list_filters_by_state_and_time(api: httpx.Client) -> None:
    first = send(api, "a")
    second = send(api, "b")
    api.delete(f"/messages/{first['id']}")
    assert ids(api.get("/messages", params={"state": "Cancelled"})) == [first["id"]]
    assert ids(api.get("/messages", params={"state": "Pending"})) == [second["id"]]
    assert api.get("/messages", params={"state": "Bogus"}).status_code == 400
    created = str(second["createdAt"])
    assert second["id"] in ids(api.get("/messages", params={"from": created}))
    assert second["id"] not in ids(api.get("/messages", params={"to": created}))
    assert api.get("/messages", params={"from": "2020-01-01T00:00:00"}).status_code == 400
    by_device = api.get("/messages", params={"deviceId": "nodevice"})
    assert by_device.json() == []
    assert by_device.headers["x-total-count"] == "0"


def test_list_leaves_content_out_unless_asked(api: httpx.Client) -> None:
    send(api, "secret text")
    [plain] = api.get("/messages").json()
    assert "textMessage" not in plain
    [full] = api.get("/messages", params={"includeContent": "true"}).json()
    assert full["textMessage"] == {"text": "secret text"}


def test_each_text_says_how_many_parts_it_is_sent_as(api: httpx.Client) -> None:
    short, long_gsm, cyrillic = send(api, "Hi"), send(api, "a" * 161), send(api, "я" * 71)
    assert [short["partsCount"], long_gsm["partsCount"], cyrillic["partsCount"]] == [1, 2, 2]
    assert api.get(f"/messages/{cyrillic['id']}").json()["partsCount"] == 2
    listed = {item["id"]: item["partsCount"] for item in api.get("/messages").json()}
    assert listed == {short["id"]: 1, long_gsm["id"]: 2, cyrillic["id"]: 2}  # without content
    data = api.post(
        "/messages",
        json={"phoneNumbers": ["+12025550100"], "dataMessage": {"data": "AQI=", "port": 53739}},
    )
    assert data.status_code == 200, data.text
    assert "partsCount" not in data.json()


def test_users_never_see_or_cancel_each_others_messages(
    server: LiveServer, api: httpx.Client
) -> None:
    mine = send(api, "alice's")
    bob = server.create_user("bob")
    with server.client(bob) as other:
        assert other.get("/messages").json() == []
        assert other.get("/messages").headers["x-total-count"] == "0"
        assert other.get(f"/messages/{mine['id']}").status_code == 404
        assert other.delete(f"/messages/{mine['id']}").status_code == 404
        # The same client id is free for another user.
        send(other, "bob's", id="shared-id")
    send(api, "alice's", id="shared-id")
    assert api.get(f"/messages/{mine['id']}").json()["state"] == "Pending"


def test_the_same_client_id_twice_is_409_and_keeps_the_first(api: httpx.Client) -> None:
    first = send(api, "first", id="order-42")
    again = api.post(
        "/messages",
        json={"id": "order-42", "phoneNumbers": ["+12025550100"], "textMessage": {"text": "x"}},
    )
    assert again.status_code == 409
    assert again.json() == {"message": "message with the same ID already exists"}
    assert api.get("/messages/order-42").json()["textMessage"] == {"text": "first"}
    assert first["id"] == "order-42"
    assert api.get("/messages").headers["x-total-count"] == "1"


def test_cancel_a_queued_message_is_cancelled_at_once(api: httpx.Client) -> None:
    sent = send(api)
    response = api.delete(f"/messages/{sent['id']}")
    assert response.status_code == 200
    state = response.json()
    assert state["state"] == "Cancelled"
    assert state["recipients"][0]["state"] == "Cancelled"
    assert set(state["states"]) == {"Pending", "Cancelled"}
    assert api.get(f"/messages/{sent['id']}").json() == state


def test_cancelling_twice_is_409(api: httpx.Client) -> None:
    sent = send(api)
    api.delete(f"/messages/{sent['id']}")
    again = api.delete(f"/messages/{sent['id']}")
    assert again.status_code == 409
    assert "not pending" in again.json()["message"]


def test_unknown_message_is_404(api: httpx.Client) -> None:
    for response in (api.get("/messages/nope"), api.delete("/messages/nope")):
        assert response.status_code == 404
        assert response.json() == {"message": "message not found"}


def test_legacy_singular_paths_work(api: httpx.Client) -> None:
    response = api.post("/message", json={"phoneNumbers": ["+12025550100"], "message": "old"})
    assert response.status_code == 200
    message_id = response.json()["id"]
    assert response.headers["location"] == f"/api/3rdparty/v1/message/{message_id}"
    assert api.get(f"/message/{message_id}").json()["textMessage"] == {"text": "old"}
    assert ids(api.get("/message")) == [message_id]
    assert api.delete(f"/message/{message_id}").json()["state"] == "Cancelled"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic " + base64.b64encode(b"alice:wrong password").decode(),
        "Basic " + base64.b64encode(b"nobody:correct horse battery").decode(),
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic !!!notbase64",
        "Bearer sometoken",
        "Digest abc",
    ],
)
def test_bad_credentials_are_401_with_a_basic_challenge(
    server: LiveServer, alice: Account, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with httpx.Client(base_url=server.api, headers=headers, verify=TLS) as client:
        for response in (client.get("/messages"), client.post("/messages", json={})):
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Basic")
            assert response.json()["message"].startswith("Unauthorized")


def test_basic_scheme_word_is_case_insensitive_and_utf8(server: LiveServer) -> None:
    account = server.create_user("zoe", "pässwörd-long-enough")
    token = base64.b64encode(f"{account.login}:{account.password}".encode()).decode()
    with httpx.Client(
        base_url=server.api, headers={"Authorization": f"basic {token}"}, verify=TLS
    ) as client:
        assert client.get("/messages").status_code == 200


def test_unknown_routes_are_404_json(server: LiveServer) -> None:
    for path in ("/nope", "/api/3rdparty/v1/nope", "/api/3rdparty/v2/messages"):
        response = httpx.get(server.url + path, verify=TLS)
        assert response.status_code == 404
        assert response.json() == {"message": "Not Found"}


def test_wrong_method_is_405_json(api: httpx.Client) -> None:
    response = api.put("/messages", json={})
    assert response.status_code == 405
    assert "message" in response.json()


@pytest.fixture
def us_server(tmp_path: Path) -> Iterator[LiveServer]:
    with running(make_settings(tmp_path / "data", default_region="us")) as live:
        yield live


def test_default_region_reads_numbers_without_plus(us_server: LiveServer) -> None:
    account = us_server.create_user("carol")
    with us_server.client(account) as client:
        state = send_numbers(client, ["(202) 555-0100", "+79161234567"])
    assert [r["phoneNumber"] for r in state["recipients"]] == ["+12025550100", "+79161234567"]


def send_numbers(client: httpx.Client, numbers: list[str]) -> dict[str, list[dict[str, str]]]:
    response = client.post(
        "/messages", json={"phoneNumbers": numbers, "textMessage": {"text": "x"}}
    )
    assert response.status_code == 200, response.text
    result: dict[str, list[dict[str, str]]] = response.json()
    return result


def pages(api: httpx.Client, **params: object) -> tuple[list[object], list[httpx.Response]]:
    """Every message of a list, page after page through the `Link` headers' next URLs."""
    answers = [api.get("/messages", params=params)]  # type: ignore[arg-type]
    while "link" in answers[-1].headers:
        link = answers[-1].headers["link"]
        assert link.startswith("</api/3rdparty/v1/messages?") and link.endswith('>; rel="next"')
        answers.append(api.get(api.base_url.join(link[1 : -len('>; rel="next"')])))
        assert answers[-1].status_code == 200, answers[-1].text
        assert len(answers) < 20
    return [i for answer in answers for i in ids(answer)], answers


@pytest.fixture
def frozen_clock() -> Iterator[None]:
    """Every message made at one moment: their order is their key's (the cursor's second
    part)."""
    moment = datetime(2026, 12, 3, 12, 0, 0, 123456, tzinfo=UTC)
    clock.set_clock(lambda: moment)
    try:
        yield
    finally:
        clock.set_clock(lambda: datetime.now(UTC))


@pytest.mark.parametrize("frozen", [False, True], ids=["apart", "at-one-moment"])
def test_a_cursor_pages_through_every_message_once_in_either_order(
    api: httpx.Client, frozen: bool, request: pytest.FixtureRequest
) -> None:
    if frozen:
        request.getfixturevalue("frozen_clock")
    sent = [send(api, f"m{i}", withDeliveryReport=i % 2 == 0)["id"] for i in range(7)]
    seen, answers = pages(api, limit=3)
    assert seen == sent[::-1]
    assert [len(a.json()) for a in answers] == [3, 3, 1]
    assert {a.headers["x-total-count"] for a in answers} == {"7"}
    assert "after=" in answers[1].request.url.query.decode()
    oldest_first, _ = pages(api, limit=2, sort="created_at", includeContent="true")
    assert oldest_first == sent
    # A page that ends the list exactly has no next link: no empty page after it.
    seen, answers = pages(api, limit=7)
    assert seen == sent[::-1] and len(answers) == 1
    # Filters and the other parameters are kept in the next URL; skip is not.
    cancelled = sent[1:6:2]
    for message_id in cancelled:
        assert api.delete(f"/messages/{message_id}").status_code == 200
    seen, answers = pages(api, limit=1, state="Cancelled", skip=0)
    assert seen == cancelled[::-1]
    assert {a.headers["x-total-count"] for a in answers} == {"3"}
    assert "skip" not in answers[-1].request.url.query.decode()


def test_a_cursor_continues_after_its_message_even_when_newer_ones_arrive(
    api: httpx.Client,
) -> None:
    """Unlike skip, a cursor does not shift when messages are sent between two pages."""
    sent = [send(api, f"m{i}")["id"] for i in range(4)]
    first = api.get("/messages", params={"limit": 2})
    assert ids(first) == sent[:1:-1]
    send(api, "newer")
    link = first.headers["link"][1 : -len('>; rel="next"')]
    assert ids(api.get(api.base_url.join(link))) == sent[1::-1]


@pytest.mark.parametrize(
    "cursor",
    [
        "junk!",
        "x",
        base64.urlsafe_b64encode(b"12.x").decode().rstrip("="),
        base64.urlsafe_b64encode(b"0012.3").decode().rstrip("="),  # not the server's form
        base64.urlsafe_b64encode(b"12.3").decode(),  # with padding
        base64.urlsafe_b64encode(b"9999999999999999999.1").decode().rstrip("="),
        base64.urlsafe_b64encode("١٢.٣".encode()).decode().rstrip("="),  # other digits
        base64.urlsafe_b64encode(b"0.9223372036854775808").decode().rstrip("="),  # > 2**63-1
        base64.urlsafe_b64encode(b"0.9999999999999999999").decode().rstrip("="),
    ],
)
def test_a_cursor_this_server_did_not_give_is_a_400(api: httpx.Client, cursor: str) -> None:
    answer = api.get("/messages", params={"after": cursor})
    assert answer.status_code == 400, answer.text
    assert "after" in answer.json()["message"]


def test_a_cursor_with_skip_or_offset_is_a_400(api: httpx.Client) -> None:
    for _ in range(3):
        send(api)
    link = api.get("/messages", params={"limit": 1}).headers["link"][1 : -len('>; rel="next"')]
    for extra in ("&skip=1", "&offset=2"):
        answer = api.get(api.base_url.join(link + extra))
        assert answer.status_code == 400, answer.text
        assert "without skip or offset" in answer.json()["message"]
