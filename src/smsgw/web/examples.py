"""Sample requests and responses of the API documentation page, keyed by operation id.

Kept as data next to the routes' schemas: tests check that every key names a live
operation and that every sample body is accepted by the route's own request model, so the
page cannot drift from the API. Operations without an entry get a sample built from their
schema.
"""

from __future__ import annotations

from typing import Any

MESSAGE_ID = "c6f1f7cc-97c1-44a2-99fb-83c4b3f9ef4c"
DEVICE_ID = "yVULogr4Y1ksRfnos1Dsw"
_STATE: dict[str, Any] = {
    "id": MESSAGE_ID,
    "deviceId": DEVICE_ID,
    "state": "Delivered",
    "isHashed": False,
    "isEncrypted": False,
    "recipients": [{"phoneNumber": "+12025550100", "state": "Delivered", "error": None}],
    "states": {
        "Pending": "2026-05-17T09:32:11.421Z",
        "Processed": "2026-05-17T09:32:12.030Z",
        "Sent": "2026-05-17T09:32:13.512Z",
        "Delivered": "2026-05-17T09:32:15.004Z",
    },
    "createdAt": "2026-05-17T09:32:11.421Z",
    "withDeliveryReport": True,
    "priority": 0,
}


class Example:
    """A sample: path parameters and query to show, the request body, the response."""

    def __init__(
        self,
        response: Any = None,
        body: Any = None,
        path: dict[str, str] | None = None,
        query: str = "",
        status: int = 200,
    ) -> None:
        self.response = response
        self.body = body
        self.path = path or {}
        self.query = query
        self.status = status


_PENDING: dict[str, Any] = {
    **_STATE,
    "state": "Pending",
    "deviceId": None,
    "recipients": [{"phoneNumber": "+12025550100", "state": "Pending", "error": None}],
    "states": {"Pending": "2026-05-17T09:32:11.421Z"},
}
_CANCELLED: dict[str, Any] = {
    **_PENDING,
    "state": "Cancelled",
    "recipients": [{"phoneNumber": "+12025550100", "state": "Cancelled", "error": None}],
    "states": {"Pending": "2026-05-17T09:32:11.421Z", "Cancelled": "2026-05-17T09:33:02.118Z"},
}
_SEND_BODY = {
    "phoneNumbers": ["+12025550100"],
    "textMessage": {"text": "Hello from API"},
    "withDeliveryReport": True,
}

EXAMPLES: dict[str, Example] = {
    "sendMessages": Example(
        body=_SEND_BODY, response={**_PENDING, "textMessage": {"text": "Hello from API"}}
    ),
    "listMessages": Example(query="skip=0&limit=20", response=[_PENDING]),
    "getMessages": Example(path={"id": MESSAGE_ID}, response=_STATE),
    "cancelMessages": Example(path={"id": MESSAGE_ID}, response=_CANCELLED),
    "listDevices": Example(
        response=[
            {
                "id": DEVICE_ID,
                "name": "Google/oriole",
                "createdAt": "2026-05-01T08:00:00.000Z",
                "updatedAt": "2026-05-17T09:30:00.000Z",
                "lastSeen": "2026-05-17T09:32:15.004Z",
                "simCards": [{"slotIndex": 0, "simNumber": 1, "carrierName": "Example"}],
                "connected": True,
            }
        ]
    ),
    "deleteDevices": Example(path={"id": DEVICE_ID}, status=204),
}
