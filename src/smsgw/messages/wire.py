"""A stored message in its wire form (the `MessageState` schema): the API answers with it and
`smsgw messages ... --json` prints it."""

from __future__ import annotations

from typing import Any

from smsgw.domain.clock import format_timestamp
from smsgw.messages.parts import count_parts
from smsgw.messages.repository import MessageRecord


def to_state(record: MessageRecord, include_content: bool) -> dict[str, Any]:
    """The wire form of a stored message, built directly: it is on the path of every send,
    where building and dumping models costs measurable time."""
    body: dict[str, Any] = {
        "id": record.id,
        "deviceId": record.device_id,
        "state": record.state,
        "isHashed": record.is_hashed,
        "isEncrypted": record.is_encrypted,
        "recipients": [
            {"phoneNumber": r.phone_number, "state": r.state, "error": r.error}
            for r in record.recipients
        ],
        "states": {state: format_timestamp(at) for state, at in record.states.items()},
        "createdAt": format_timestamp(record.created_at),
        "withDeliveryReport": record.with_delivery_report,
        "priority": record.priority,
    }
    if record.sim_number is not None:
        body["simNumber"] = record.sim_number
    if record.valid_until is not None:
        body["validUntil"] = format_timestamp(record.valid_until)
    if record.schedule_at is not None:
        body["scheduleAt"] = format_timestamp(record.schedule_at)
    if record.text is not None:
        body["partsCount"] = count_parts(record.text)
        if include_content:
            body["textMessage"] = {"text": record.text}
    if include_content and record.data is not None:
        body["dataMessage"] = {"data": record.data, "port": record.port}
    return body
