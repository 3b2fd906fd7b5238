"""Data messages through a carrier link (docs/links.md "Which messages a link sends"),
through a real running smsgw against the npm `smpp` simulator: a data message goes as one
binary SMS (data_coding 4) behind an application port header, as Android's sendDataMessage
sends it; more data than one SMS holds, and an encrypted message, fail at once with why. And
a message's validUntil goes to the SMSC as the submit_sm's validity_period."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsgw.config import Settings
from smsgw.links.encoding import MAX_DATA
from smsgw.links.service import ENCRYPTED, TOO_MUCH_DATA
from tests.conftest import Account, LiveServer
from tests.fakes.smsc import Smsc
from tests.test_links import NUMBER, add_link, bound, reaches
from tests.webhook_support import hub_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return hub_settings(tmp_path / "data", link_connect_timeout_seconds=2)


@pytest.fixture
def link(server: LiveServer, alice: Account, smsc: Smsc) -> str:
    link_id = add_link(server, smsc, alice.login)
    bound(server, link_id)
    return link_id


def send(api: httpx.Client, **body: Any) -> str:
    answer = api.post("/messages", json={"phoneNumbers": [NUMBER], **body})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def data_message(payload: bytes, port: int) -> dict[str, Any]:
    return {"dataMessage": {"data": base64.b64encode(payload).decode(), "port": port}}


def test_a_data_message_goes_as_one_binary_sms_behind_a_port_header(
    api: httpx.Client, link: str, smsc: Smsc
) -> None:
    payload = bytes([0x00, 0x01, 0xFE, 0xFF]) + b"wake up"
    done = reaches(api, send(api, **data_message(payload, 0x1F90)), "Delivered")
    assert done["deviceId"] == link
    [submit] = smsc.submits()
    assert (submit["data_coding"], submit["esm_class"]) == (4, 0x40)
    assert submit["udh"] == ["05041f900000"]  # ports: 8080 to, 0 from
    assert submit["text"] == payload.hex()


def test_the_most_data_one_sms_holds_goes_and_one_byte_more_fails(
    api: httpx.Client, link: str, smsc: Smsc
) -> None:
    fits = reaches(api, send(api, **data_message(bytes(MAX_DATA), 9200)), "Delivered")
    assert fits["deviceId"] == link
    too_much = reaches(api, send(api, **data_message(bytes(MAX_DATA + 1), 9200)), "Failed")
    assert too_much["recipients"][0]["error"] == TOO_MUCH_DATA
    assert len(smsc.submits()) == 1


def test_an_encrypted_message_fails_at_once_with_why(
    api: httpx.Client, link: str, smsc: Smsc
) -> None:
    body = {"textMessage": {"text": "c2VjcmV0"}, "isEncrypted": True}
    failed = reaches(api, send(api, **body), "Failed")
    assert failed["recipients"][0]["error"] == ENCRYPTED
    assert smsc.submits() == []


def test_valid_until_goes_to_the_smsc_as_the_validity_period(
    api: httpx.Client, link: str, smsc: Smsc
) -> None:
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    body = {"textMessage": {"text": "valid for two hours"}, "validUntil": until.isoformat()}
    reaches(api, send(api, **body), "Delivered")
    reaches(api, send(api, textMessage={"text": "no validUntil"}), "Delivered")
    validity = {submit["text"]: submit["validity"] for submit in smsc.submits()}
    assert validity["no validUntil"] is None  # the SMSC's default
    # the simulator (node-smpp) reads the absolute time back as a moment
    assert datetime.fromisoformat(validity["valid for two hours"]) == until
