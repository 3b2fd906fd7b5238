"""POST /messages: each validation rule answers 400 with a message naming what is wrong."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Query

from smsgw.api.apps.messages import (
    DEVICE_ACTIVE_WITHIN,
    SEND_PARAMETERS,
    SKIP_PHONE_VALIDATION,
)
from smsgw.app import create_app
from smsgw.config import Settings

TEXT = {"textMessage": {"text": "Hello"}}
ONE = {"phoneNumbers": ["+12025550100"]}


@pytest.fixture
def api(shared_api: httpx.Client) -> httpx.Client:
    """One server for the module: these tests only send messages as alice, who has no phone,
    and read the answers."""
    return shared_api


def later(seconds: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def post(api: httpx.Client, body: dict[str, Any], **params: str) -> httpx.Response:
    return api.post("/messages", json=body, params=params)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"phoneNumbers": []} | TEXT, "phoneNumbers"),
        ({"phoneNumbers": [f"+1202555{i:04d}" for i in range(101)]} | TEXT, "phoneNumbers"),
        ({"phoneNumbers": [""]} | TEXT, "phoneNumbers[0]: String should have at least 1 char"),
        ({"phoneNumbers": ["+1" + "2" * 200]} | TEXT, "phoneNumbers[0]"),
        (TEXT, "phoneNumbers"),
        (ONE, "exactly one of textMessage, dataMessage or message"),
        (ONE | TEXT | {"message": "x"}, "textMessage and message"),
        (
            ONE | TEXT | {"dataMessage": {"data": "aGk=", "port": 53739}},
            "textMessage and dataMessage",
        ),
        (ONE | {"textMessage": {"text": ""}}, "textMessage.text: String should have at least 1"),
        (ONE | {"message": ""}, "message: String should have at least 1 character"),
        (ONE | TEXT | {"deviceId": ""}, "deviceId: String should have at least 1 character"),
        (ONE | TEXT | {"deviceId": "d" * 33}, "deviceId: String should have at most 32 characters"),
        (ONE | {"textMessage": {"text": "x" * 65536}}, "textMessage.text"),
        (ONE | {"dataMessage": {"data": "not base64!", "port": 53739}}, "dataMessage.data"),
        (ONE | {"dataMessage": {"data": "aGk=", "port": 0}}, "dataMessage.port"),
        (ONE | {"dataMessage": {"data": "aGk=", "port": 65536}}, "dataMessage.port"),
        (ONE | TEXT | {"simNumber": 0}, "simNumber"),
        (ONE | TEXT | {"simNumber": 4}, "simNumber"),
        (ONE | TEXT | {"priority": 128}, "priority"),
        (ONE | TEXT | {"priority": -129}, "priority"),
        (ONE | TEXT | {"ttl": -1}, "ttl"),
        (ONE | TEXT | {"ttl": 60, "validUntil": later(3600)}, "ttl and validUntil"),
        (ONE | TEXT | {"validUntil": "2026-01-01T00:00:00"}, "validUntil"),
        (ONE | TEXT | {"validUntil": "tomorrow"}, "validUntil"),
        (ONE | TEXT | {"scheduleAt": "yesterday"}, "scheduleAt"),
        (ONE | TEXT | {"id": "x" * 37}, "id"),
        (ONE | TEXT | {"id": ""}, "id"),
        (ONE | TEXT | {"withDeliveryReport": "maybe"}, "withDeliveryReport"),
        (ONE | TEXT | {"mmsMessage": {"text": "x"}}, "mmsMessage is not supported"),
        ({"phoneNumbers": "+12025550100"} | TEXT, "phoneNumbers"),
        # U+0000: stored by SQLite, refused by PostgreSQL's text: a 400 on both.
        (ONE | {"textMessage": {"text": "a\x00b"}}, "textMessage.text: must not contain the NUL"),
        (ONE | {"message": "a\x00b"}, "message: must not contain the NUL character"),
        (ONE | TEXT | {"deviceId": "a\x00"}, "deviceId: must not contain the NUL character"),
        (
            {"phoneNumbers": ["+1202555\x000100"], "isEncrypted": True} | TEXT,
            "phoneNumbers[0]: must not contain the NUL character",
        ),
    ],
)
def test_a_field_breaking_its_rule_is_refused_naming_it(
    api: httpx.Client, body: dict[str, Any], expected: str
) -> None:
    response = post(api, body)
    assert response.status_code == 400, response.text
    assert expected in response.json()["message"]
    assert api.get("/messages").headers["x-total-count"] == "0"


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("12025550100", "has no country code"),
        ("+1202", "not a valid phone number"),
        ("+442071838750", "not a mobile phone number"),
        ("hello", "has no country code"),
        ("+hello", "not a phone number"),
    ],
)
def test_bad_phone_numbers_are_refused(api: httpx.Client, number: str, expected: str) -> None:
    response = post(api, {"phoneNumbers": ["+12025550100", number]} | TEXT)
    assert response.status_code == 400
    message = response.json()["message"]
    assert message.startswith("phoneNumbers[1]: ")
    assert expected in message


def test_numbers_are_stored_in_e164(api: httpx.Client) -> None:
    response = post(api, {"phoneNumbers": ["+1 (202) 555-0100", " +79161234567 "]} | TEXT)
    assert response.status_code == 200
    numbers = [r["phoneNumber"] for r in response.json()["recipients"]]
    assert numbers == ["+12025550100", "+79161234567"]


def test_numbers_must_be_unique_after_normalisation(api: httpx.Client) -> None:
    response = post(api, {"phoneNumbers": ["+12025550100", "+1 202 555 0100"]} | TEXT)
    assert response.status_code == 400
    assert "must be unique" in response.json()["message"]


def test_skip_phone_validation_stores_numbers_as_given(api: httpx.Client) -> None:
    response = post(api, {"phoneNumbers": ["12345"]} | TEXT, skipPhoneValidation="true")
    assert response.status_code == 200
    assert response.json()["recipients"][0]["phoneNumber"] == "12345"


def test_encrypted_messages_bypass_number_parsing(api: httpx.Client) -> None:
    opaque = "$aes-256-cbc/pbkdf2-sha1$i=75000$c2FsdA==$ZGF0YQ=="
    body = {"phoneNumbers": [opaque], "textMessage": {"text": opaque}, "isEncrypted": True}
    response = post(api, body)
    assert response.status_code == 200
    state = response.json()
    assert state["isEncrypted"] is True
    assert state["recipients"][0]["phoneNumber"] == opaque
    assert state["textMessage"] == {"text": opaque}


def test_every_option_is_stored_and_echoed(api: httpx.Client) -> None:
    valid_until = later(7200)
    schedule_at = later(600)
    body = (
        ONE
        | TEXT
        | {
            "simNumber": 2,
            "withDeliveryReport": False,
            "priority": 100,
            "validUntil": valid_until,
            "scheduleAt": schedule_at,
            "id": "my-own-id-1",
        }
    )
    state = post(api, body).json()
    stored = api.get("/messages/my-own-id-1").json()
    for view in (state, stored):
        assert view["id"] == "my-own-id-1"
        assert view["simNumber"] == 2
        assert view["withDeliveryReport"] is False
        assert view["priority"] == 100
        assert view["validUntil"].endswith("Z")
        assert view["scheduleAt"].endswith("Z")
    assert stored == state


def test_ttl_sets_valid_until(api: httpx.Client) -> None:
    state = post(api, ONE | TEXT | {"ttl": 3600}).json()
    created = datetime.fromisoformat(state["createdAt"])
    valid_until = datetime.fromisoformat(state["validUntil"])
    assert valid_until - created == timedelta(hours=1)


def test_data_messages_keep_data_and_port(api: httpx.Client) -> None:
    state = post(api, ONE | {"dataMessage": {"data": "aGVsbG8=", "port": 53739}}).json()
    assert state["dataMessage"] == {"data": "aGVsbG8=", "port": 53739}
    assert "textMessage" not in state


def test_legacy_message_field_is_stored_as_text(api: httpx.Client) -> None:
    state = post(api, ONE | {"message": "legacy"}).json()
    assert state["textMessage"] == {"text": "legacy"}


def test_delivery_report_is_on_by_default(api: httpx.Client) -> None:
    assert post(api, ONE | TEXT).json()["withDeliveryReport"] is True


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"scheduleAt": "2020-01-01T00:00:00Z"}, "scheduleAt must be in the future"),
        ({"validUntil": "2020-01-01T00:00:00Z"}, "validUntil must be in the future"),
        (
            {"scheduleAt": later(7200), "validUntil": later(3600)},
            "scheduleAt must be less than or equal to validUntil",
        ),
        ({"scheduleAt": later(7200), "ttl": 60}, "scheduleAt must be less than or equal to"),
    ],
)
def test_schedule_and_expiry_must_make_sense(
    api: httpx.Client, extra: dict[str, Any], expected: str
) -> None:
    response = post(api, ONE | TEXT | extra)
    assert response.status_code == 400
    assert expected in response.json()["message"]


def test_an_unknown_device_is_refused(api: httpx.Client) -> None:
    response = post(api, ONE | TEXT | {"deviceId": "nosuchdevice123456789"})
    assert response.status_code == 400
    assert "deviceId" in response.json()["message"]


def test_device_active_within_needs_a_recently_seen_phone(api: httpx.Client) -> None:
    response = post(api, ONE | TEXT, deviceActiveWithin="12")
    assert response.status_code == 400
    assert "deviceActiveWithin" in response.json()["message"]
    assert post(api, ONE | TEXT, deviceActiveWithin="-1").status_code == 400
    assert post(api, ONE | TEXT, deviceActiveWithin="0").status_code == 200


def test_unknown_fields_are_ignored(api: httpx.Client) -> None:
    assert post(api, ONE | TEXT | {"somethingElse": 1}).status_code == 200


def test_malformed_json_is_400(api: httpx.Client) -> None:
    response = api.post(
        "/messages", content=b'{"phoneNumbers": [', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["message"].startswith("malformed JSON body")


def test_a_body_that_is_not_json_says_so(api: httpx.Client) -> None:
    response = api.post(
        "/messages", content=b"phoneNumbers=1", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 400
    assert "Content-Type: application/json" in response.json()["message"]


def test_a_json_array_body_is_refused(api: httpx.Client) -> None:
    response = api.post("/messages", json=[1, 2])
    assert response.status_code == 400


def test_a_body_over_the_limit_is_413(api: httpx.Client) -> None:
    big = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "x" * (2 * 1024 * 1024)}}
    response = post(api, big)
    assert response.status_code == 413
    assert "too large" in response.json()["message"]


def test_a_streamed_body_over_the_limit_is_413(api: httpx.Client) -> None:
    def chunks() -> Any:
        yield b'{"phoneNumbers": ["+12025550100"], "textMessage": {"text": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}}'

    response = api.post("/messages", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "too large" in response.json()["message"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "skipPhoneValidation=maybe",
            "skipPhoneValidation: Input should be a valid boolean, unable to interpret input",
        ),
        ("deviceActiveWithin=-1", "deviceActiveWithin: Input should be greater than or equal to 0"),
        (
            "deviceActiveWithin=9000",
            "deviceActiveWithin: Input should be less than or equal to 8760",
        ),
        (
            "deviceActiveWithin=1.5",
            "deviceActiveWithin: Input should be a valid integer, unable to parse string as an "
            "integer",
        ),
        (
            "skipPhoneValidation=true&skipPhoneValidation=false",
            "skipPhoneValidation: give this query parameter once, not 2 times",
        ),
        ("other=1&other=2", "other: give this query parameter once, not 2 times"),
    ],
)
def test_a_bad_query_parameter_is_refused_naming_it(
    api: httpx.Client, query: str, expected: str
) -> None:
    response = api.post(f"/messages?{query}", json=ONE | TEXT)
    assert response.status_code == 400
    assert response.json() == {"message": expected}


def test_query_options_are_read_as_fastapi_reads_query_parameters(api: httpx.Client) -> None:
    skipped = api.post(
        "/messages?skipPhoneValidation=YES&unknown=1", json={"phoneNumbers": ["12"]} | TEXT
    )
    assert skipped.status_code == 200
    assert skipped.json()["recipients"][0]["phoneNumber"] == "12"
    checked = api.post("/messages?skipPhoneValidation=off", json={"phoneNumbers": ["12"]} | TEXT)
    assert checked.status_code == 400
    assert "phoneNumbers[0]" in checked.json()["message"]


def test_the_documented_query_is_what_fastapi_would_document_for_it(tmp_path: Path) -> None:
    """`POST /messages` reads its query itself (api/apps/messages.py `send_options`);
    its OpenAPI parameters must be those of the same parameters declared the FastAPI way."""
    declared = FastAPI()

    @declared.post("/messages")
    async def send(
        skip: Annotated[
            bool, Query(alias="skipPhoneValidation", description=SKIP_PHONE_VALIDATION)
        ] = False,
        active: Annotated[
            int, Query(alias="deviceActiveWithin", ge=0, le=8760, description=DEVICE_ACTIVE_WITHIN)
        ] = 0,
    ) -> None:
        """Only documented."""

    expected = declared.openapi()["paths"]["/messages"]["post"]["parameters"]
    assert expected == SEND_PARAMETERS
    served = create_app(Settings(data_dir=tmp_path)).openapi()["paths"][
        "/api/3rdparty/v1/messages"
    ]["post"]
    assert served["parameters"] == expected


def test_a_bad_query_is_named_with_a_bad_body_as_fastapi_names_them(api: httpx.Client) -> None:
    both = api.post("/messages?deviceActiveWithin=-1", json={"phoneNumbers": []} | TEXT)
    assert both.status_code == 400
    assert both.json()["message"] == (
        "deviceActiveWithin: Input should be greater than or equal to 0; "
        "phoneNumbers: List should have at least 1 item after validation, not 0"
    )
    repeated = api.post("/message?a=1&a=2", content=b"not json")
    assert repeated.status_code == 400
    assert repeated.json() == {"message": "a: give this query parameter once, not 2 times"}


@pytest.mark.parametrize("prefix", ["/messages", "/message"])
@pytest.mark.parametrize(("method", "item"), [("GET", False), ("GET", True), ("DELETE", True)])
def test_every_messages_route_refuses_a_repeated_query_parameter(
    api: httpx.Client, prefix: str, method: str, item: bool
) -> None:
    path = f"{prefix}/some-id" if item else prefix
    response = api.request(method, path, params=[("limit", "1"), ("limit", "2")])
    assert response.status_code == 400
    assert response.json() == {"message": "limit: give this query parameter once, not 2 times"}


def test_the_published_schema_refuses_what_the_nul_check_refuses(api: httpx.Client) -> None:
    """Every text the send refuses for U+0000 carries a pattern saying so in the OpenAPI
    document, so that a client (or schemathesis) reading it does not take such a text for
    valid: the fuzzer once found `message` refused while its schema allowed it."""
    schemas = api.get(api.base_url.join("/openapi.json")).json()["components"]["schemas"]
    send = schemas["SendMessageRequest"]["properties"]
    texts = [
        schemas["TextMessage"]["properties"]["text"],
        *send["message"]["anyOf"][:1],
        *send["deviceId"]["anyOf"][:1],
        send["phoneNumbers"]["items"],
    ]
    pattern = re.compile(texts[0]["pattern"])
    assert [text.get("pattern") for text in texts] == [pattern.pattern] * len(texts)
    assert pattern.fullmatch("Hello, €") and not pattern.fullmatch("a\x00b")
