"""The webhook event names smsgw accepts: the upstream server's list (v1.14.5, §7.1)."""

from __future__ import annotations

EVENTS: tuple[str, ...] = (
    "sms:received",
    "sms:data-received",
    "sms:sent",
    "sms:delivered",
    "sms:failed",
    "sms:cancelled",
    "system:ping",
    "mms:received",
    "mms:downloaded",
    "app:started",
    "sms:batch:received",
    "sms:batch:data-received",
    "mms:batch:received",
    "mms:batch:downloaded",
)

#: Events the Android app (v1.68) itself knows; an unknown one breaks the phone's sync, so
#: only these are ever handed to a phone.
PHONE_EVENTS: tuple[str, ...] = EVENTS[:10]

#: What the phone must always post to smsgw in hub mode: received messages fill the inbox.
INBOX_EVENTS: tuple[str, ...] = (
    "sms:received",
    "sms:data-received",
    "mms:received",
    "mms:downloaded",
)

#: Batch events (`{"messages": [...]}`) and the event of each message they carry; smsgw
#: emits them for inbox exports asking for Batch delivery, and takes them from phones.
BATCH_EVENTS: dict[str, str] = {
    "sms:batch:received": "sms:received",
    "sms:batch:data-received": "sms:data-received",
    "mms:batch:received": "mms:received",
    "mms:batch:downloaded": "mms:downloaded",
}

#: The batch event of each inbox message type.
BATCH_OF_TYPE: dict[str, str] = {
    "SMS": "sms:batch:received",
    "DATA_SMS": "sms:batch:data-received",
    "MMS": "mms:batch:received",
    "MMS_DOWNLOADED": "mms:batch:downloaded",
}

#: Message states a recipient reaches, and the events they mean (a recipient reported
#: Delivered straight away was also Sent).
STATE_EVENTS: dict[str, tuple[str, ...]] = {
    "Sent": ("sms:sent",),
    "Delivered": ("sms:sent", "sms:delivered"),
    "Failed": ("sms:failed",),
    "Cancelled": ("sms:cancelled",),
}

#: The payload field carrying the moment of each state event.
STATE_TIME_FIELD: dict[str, str] = {
    "sms:sent": "sentAt",
    "sms:delivered": "deliveredAt",
    "sms:failed": "failedAt",
    "sms:cancelled": "cancelledAt",
}
