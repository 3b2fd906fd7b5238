"""The official Python client (PyPI `android-sms-gateway`) against a running smsgw.

The client is the contract: whatever it sends must be accepted, and whatever smsgw answers
must parse into its own types. It talks HTTP to the live server on 127.0.0.1 via httpx.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from android_sms_gateway import (
    APIClient,
    AsyncAPIClient,
    DataMessage,
    Message,
    MessagesQueryFilter,
    MessageState,
    ProcessState,
    QueryPagination,
    TextMessage,
)
from android_sms_gateway.errors import NotFoundError, UnauthorizedError
from android_sms_gateway.http import HttpxHttpClient

from tests.clients import TLS
from tests.conftest import Account, LiveServer

NUMBER = "+12025550100"
OTHER_NUMBER = "+12025550101"


@pytest.fixture
def client(server: LiveServer, alice: Account) -> Iterator[APIClient]:
    """The official client signed in as alice, with the base URL of the hosted server."""
    with APIClient(alice.login, alice.password, base_url=server.url + "/3rdparty/v1") as c:
        yield c


def text(body: str, *numbers: str) -> Message:
    return Message(phone_numbers=list(numbers or [NUMBER]), text_message=TextMessage(text=body))


def test_send_returns_a_pending_state_the_client_parses(client: APIClient) -> None:
    state = client.send(text("Hello from the official client", NUMBER, OTHER_NUMBER))

    assert isinstance(state, MessageState)
    assert state.id
    assert state.state is ProcessState.Pending
    assert [(r.phone_number, r.state, r.error) for r in state.recipients] == [
        (NUMBER, ProcessState.Pending, None),
        (OTHER_NUMBER, ProcessState.Pending, None),
    ]
    assert state.is_hashed is False
    assert state.is_encrypted is False
    assert state.device_id is None
    assert state.states is not None and "Pending" in state.states
    assert state.created_at is not None
    assert abs(state.created_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_the_client_wire_format_is_stored_as_sent(
    client: APIClient, server: LiveServer, alice: Account
) -> None:
    """`priority: 0`, `isEncrypted: false` and `withDeliveryReport` always go on the wire."""
    sent = client.send(
        Message(
            phone_numbers=[NUMBER],
            text_message=TextMessage(text="Stored exactly"),
            with_delivery_report=False,
            sim_number=2,
            ttl=3600,
            id="client-chosen-id-1",
        )
    )
    assert sent.id == "client-chosen-id-1"
    with server.client(alice) as api:
        stored = api.get(f"/messages/{sent.id}").json()
    assert stored["textMessage"] == {"text": "Stored exactly"}
    assert stored["withDeliveryReport"] is False
    assert stored["simNumber"] == 2
    assert stored["priority"] == 0
    assert stored["isEncrypted"] is False
    assert "validUntil" in stored


def test_a_data_message_is_accepted_and_kept_as_base64(
    client: APIClient, server: LiveServer, alice: Account
) -> None:
    payload = b"\x00\x01binary\xff"
    sent = client.send(
        Message(phone_numbers=[NUMBER], data_message=DataMessage.with_bytes(payload, port=53739))
    )

    assert sent.state is ProcessState.Pending
    assert [r.phone_number for r in sent.recipients] == [NUMBER]
    with server.client(alice) as api:
        stored = api.get(f"/messages/{sent.id}").json()
    assert stored["dataMessage"]["port"] == 53739
    assert base64.b64decode(stored["dataMessage"]["data"]) == payload
    assert "textMessage" not in stored


def test_get_state_reads_back_the_sent_message(client: APIClient) -> None:
    sent = client.send(text("Read me back", NUMBER))

    state = client.get_state(sent.id)

    assert state.id == sent.id
    assert state.state is ProcessState.Pending
    assert [(r.phone_number, r.state) for r in state.recipients] == [(NUMBER, ProcessState.Pending)]
    assert state.created_at == sent.created_at


def test_get_messages_pages_and_filters_with_the_client_types(client: APIClient) -> None:
    ids = [client.send(text(f"Message {i}")).id for i in range(3)]

    newest_first = client.get_messages()
    assert [m.id for m in newest_first] == ids[::-1]

    oldest_two = client.get_messages(pagination=QueryPagination(limit=2), sort="created_at")
    assert [m.id for m in oldest_two] == ids[:2]
    third = client.get_messages(pagination=QueryPagination(limit=2, offset=2), sort="created_at")
    assert [m.id for m in third] == ids[2:]

    now = datetime.now(UTC)
    recent = client.get_messages(
        query=MessagesQueryFilter(
            from_=now - timedelta(hours=1), to=now + timedelta(hours=1), state="Pending"
        )
    )
    assert {m.id for m in recent} == set(ids)
    assert client.get_messages(query=MessagesQueryFilter(state="Sent")) == []
    assert client.get_messages(query=MessagesQueryFilter(to=now - timedelta(hours=1))) == []


def test_cancel_message_leaves_it_cancelled(client: APIClient) -> None:
    sent = client.send(text("Never mind", NUMBER, OTHER_NUMBER))

    assert client.cancel_message(sent.id) is None

    state = client.get_state(sent.id)
    assert state.state is ProcessState.Cancelled
    assert {r.state for r in state.recipients} == {ProcessState.Cancelled}
    assert state.states is not None and {"Pending", "Cancelled"} <= set(state.states)


def test_a_wrong_password_raises_the_clients_unauthorized_error(
    server: LiveServer, alice: Account
) -> None:
    base_url = server.url + "/3rdparty/v1"
    with APIClient(alice.login, "not the password", base_url=base_url) as wrong:
        with pytest.raises(UnauthorizedError) as raised:
            wrong.send(text("Should not be queued"))
        with pytest.raises(UnauthorizedError):
            wrong.get_messages()
    assert raised.value.status_code == 401
    assert isinstance(raised.value.response, dict)
    assert raised.value.response.get("message")


def test_an_unknown_id_raises_the_clients_not_found_error(client: APIClient) -> None:
    with pytest.raises(NotFoundError) as raised:
        client.get_state("no-such-message")
    assert raised.value.status_code == 404
    assert raised.value.response == {"message": "message not found"}

    with pytest.raises(NotFoundError):
        client.cancel_message("no-such-message")


def test_the_client_works_the_same_under_the_api_prefix(server: LiveServer, alice: Account) -> None:
    base_url = server.url + "/api/3rdparty/v1"
    with APIClient(alice.login, alice.password, base_url=base_url) as client:
        sent = client.send(text("Under /api", NUMBER))
        assert client.get_state(sent.id).recipients[0].phone_number == NUMBER
        assert [m.id for m in client.get_messages()] == [sent.id]
        client.cancel_message(sent.id)
        assert client.get_state(sent.id).state is ProcessState.Cancelled


def test_the_async_client_sends_and_reads_back(server: LiveServer, alice: Account) -> None:
    async def scenario() -> tuple[MessageState, MessageState, list[MessageState]]:
        base_url = server.url + "/api/3rdparty/v1"
        async with AsyncAPIClient(alice.login, alice.password, base_url=base_url) as client:
            sent = await client.send(text("Hello, async", NUMBER))
            state = await client.get_state(sent.id)
            listed = await client.get_messages()
            return sent, state, listed

    sent, state, listed = asyncio.run(scenario())

    assert sent.state is ProcessState.Pending
    assert state.id == sent.id
    assert [r.phone_number for r in state.recipients] == [NUMBER]
    assert [m.id for m in listed] == [sent.id]


def test_the_client_sends_its_requests_with_basic_auth_and_json(
    server: LiveServer, alice: Account
) -> None:
    """What the client puts on the wire, seen through an httpx client it is given."""
    seen: list[httpx.Request] = []
    with httpx.Client(event_hooks={"request": [seen.append]}, verify=TLS) as http:
        client = APIClient(
            alice.login,
            alice.password,
            base_url=server.url + "/3rdparty/v1/",
            http=HttpxHttpClient(http),
        )
        client.send(text("Seen on the wire"))
    [request] = seen
    assert request.url.path == "/3rdparty/v1/messages"
    expected = base64.b64encode(f"{alice.login}:{alice.password}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.headers["content-type"] == "application/json"
