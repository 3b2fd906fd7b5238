"""Reading what a phone posts about a received message: SMS, data SMS, MMS, downloaded MMS.

Each reader raises InvalidInput naming the payload field that is wrong (a 400 for the phone).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from smsgw.domain import clock
from smsgw.domain.errors import InvalidInput

TYPE_OF_EVENT = {
    "sms:received": "SMS",
    "sms:data-received": "DATA_SMS",
    "mms:received": "MMS",
    "mms:downloaded": "MMS_DOWNLOADED",
}
EVENT_OF_TYPE = {kind: event for event, kind in TYPE_OF_EVENT.items()}
#: Phones have a handful of SIM slots; anything else posted as a slot number is dropped.
MAX_SIM = 255
MAX_ATTACHMENTS = 100
SUBJECT_LENGTH = 256
NAME_LENGTH = 256
#: A posted content type: printable ASCII, no control character (it may end up in a header).
PRINTABLE = re.compile(r"[\x20-\x7e]{1,128}")


@dataclass(frozen=True)
class Attachment:
    """One part of a downloaded MMS (`data`: the bytes, when the phone sent them)."""

    part_id: int
    content_type: str
    name: str | None
    size: int | None
    data: bytes | None


@dataclass(frozen=True)
class Received:
    """What a phone posted about one received message; `payload` is kept as posted, minus
    attachment data (stored with the attachments)."""

    type: str
    message_id: str
    sender: str | None
    recipient: str | None
    sim_number: int | None
    text: str | None
    data: str | None
    received_at: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    transaction_id: str | None = None
    content_class: str | None = None
    size: int | None = None
    attachments: tuple[Attachment, ...] = ()


def received_moment(item: Received) -> datetime | None:
    """When the phone says it received the message (None: it did not say, or not readably)."""
    try:
        return clock.parse_timestamp(item.received_at) if item.received_at else None
    except ValueError:
        return None


def _text(payload: dict[str, Any], name: str, limit: int, where: str = "payload") -> str | None:
    """An optional string field, cut to `limit` characters."""
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{where}.{name}: must be a string")
    return value[:limit]


def _count(payload: dict[str, Any], name: str, where: str = "payload") -> int | None:
    """An optional whole number ≥ 0 (a byte count)."""
    value = payload.get(name)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value < 2**31:
        raise InvalidInput(f"{where}.{name}: must be a whole number from 0 to 2147483647")
    return value


def _common(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    message_id = payload.get("messageId")
    if not isinstance(message_id, str) or not message_id or len(message_id) > 128:
        raise InvalidInput("payload.messageId: required, a string of at most 128 characters")
    sim, sender = payload.get("simNumber"), payload.get("sender") or payload.get("phoneNumber")
    at = payload.get("receivedAt")
    return {
        "type": TYPE_OF_EVENT[event], "message_id": message_id,
        "sender": str(sender)[:128] if sender is not None else None,
        "recipient": str(payload["recipient"])[:128] if payload.get("recipient") else None,
        "sim_number": sim if type(sim) is int and 0 <= sim <= MAX_SIM else None,
        "received_at": at if isinstance(at, str) else None,
        "text": None, "data": None, "payload": payload,
    }  # fmt: skip


def _sms(event: str, payload: dict[str, Any]) -> Received:
    content_field = "message" if event == "sms:received" else "data"
    content = payload.get(content_field)
    if not isinstance(content, str):
        raise InvalidInput(f"payload.{content_field}: required, a string")
    return Received(
        **_common(event, payload) | {"text" if event == "sms:received" else "data": content}
    )


def _mms(event: str, payload: dict[str, Any]) -> Received:
    transaction_id = payload.get("transactionId")
    if not isinstance(transaction_id, str) or not transaction_id or len(transaction_id) > 128:
        raise InvalidInput("payload.transactionId: required, a string of at most 128 characters")
    return Received(
        **_common(event, payload),
        subject=_text(payload, "subject", SUBJECT_LENGTH), transaction_id=transaction_id,
        content_class=_text(payload, "contentClass", 32), size=_count(payload, "size"),
    )  # fmt: skip


def _attachment(part: Any, where: str) -> Attachment:
    if not isinstance(part, dict):
        raise InvalidInput(f"{where}: must be an object {{partId, contentType, ...}}")
    part_id = part.get("partId")
    if type(part_id) is not int or not 0 <= part_id < 2**31:
        raise InvalidInput(f"{where}.partId: required, a whole number from 0 to 2147483647")
    content_type = part.get("contentType")
    if not isinstance(content_type, str) or not PRINTABLE.fullmatch(content_type):
        raise InvalidInput(f"{where}.contentType: required, at most 128 printable ASCII characters")
    data = part.get("data")
    if data is not None:
        if not isinstance(data, str):
            raise InvalidInput(f"{where}.data: must be a base64 string")
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{where}.data: not valid base64") from None
    return Attachment(
        part_id, content_type, _text(part, "name", NAME_LENGTH, where), _count(part, "size", where),
        data,
    )  # fmt: skip


def _downloaded(event: str, payload: dict[str, Any]) -> Received:
    parts = payload.get("attachments")
    if not isinstance(parts, list) or len(parts) > MAX_ATTACHMENTS:
        raise InvalidInput(f"payload.attachments: required, a list of at most {MAX_ATTACHMENTS}")
    attachments = tuple(
        _attachment(part, f"payload.attachments[{i}]") for i, part in enumerate(parts)
    )
    if len({a.part_id for a in attachments}) != len(attachments):
        raise InvalidInput("payload.attachments: each partId must appear once")
    kept = {**payload, "attachments": [
        {k: v for k, v in part.items() if k != "data"} for part in parts
    ]}  # fmt: skip
    return Received(
        **_common(event, kept) | {"text": _text(payload, "body", 1_000_000)},
        subject=_text(payload, "subject", SUBJECT_LENGTH), attachments=attachments,
    )  # fmt: skip


READERS = {
    "sms:received": _sms,
    "sms:data-received": _sms,
    "mms:received": _mms,
    "mms:downloaded": _downloaded,
}


def parse(event: str, payload: dict[str, Any]) -> Received:
    """Read the payload of a received-message event (`TYPE_OF_EVENT`)."""
    return READERS[event](event, payload)


def payload_of(row: dict[str, Any]) -> dict[str, Any]:
    """The payload the phone posted for an inbox row, without attachment bytes (kept once,
    with the attachments: `GET /inbox/{id}/attachments/{partId}`); rows stored before
    payloads were kept are rebuilt from their columns."""
    if row.get("payload") is not None:
        return dict(row["payload"])
    rebuilt = {
        "messageId": row["message_id"], "sender": row["sender"], "phoneNumber": row["sender"],
        "recipient": row["recipient"], "simNumber": row["sim_number"],
        "message": row["text"], "data": row["data"],
        "receivedAt": clock.format_timestamp(row["received_at"]),
    }  # fmt: skip
    return {key: value for key, value in rebuilt.items() if value is not None}
