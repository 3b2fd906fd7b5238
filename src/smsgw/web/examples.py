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
    "partsCount": 1,
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

#: A number that texted STOP (optouts/).
_OPTED_OUT = {
    "phoneNumber": "+12025550143",
    "source": "sms",
    "createdAt": "2026-05-17T08:15:02.000Z",
}

#: A phone's budget (routing/budgets.py): 12 parts of 30 this minute, 310 of its own 500 today.
_BUDGET = {
    "perMinute": 30,
    "perDay": 500,
    "usedThisMinute": 12,
    "usedToday": 310,
    "own": {"perMinute": None, "perDay": 500},
}

LINK_ID = "Lk7QhX2mR9cTzW4pVb1Ns"
_LINK = {
    "id": LINK_ID,
    "name": "Carrier A",
    "kind": "smpp",
    "host": "smsc.example.net",
    "port": 2775,
    "systemId": "alice01",
    "systemType": "",
    "source": "SMSGW",
    "sourceTon": 5,
    "sourceNpi": 0,
    "throughput": 50,
    "window": 10,
    "dataCoding": 0,
    "bindMode": "transceiver",
    "state": "bound",
    "detail": None,
    "stateSince": "2026-05-17T08:02:41.120Z",
    "queue": {"waiting": 12, "planned": 3, "inFlight": 10},
    "recent": {
        "since": "2026-05-16T09:32:11.421Z",
        "submitted": 1840,
        "accepted": 25,
        "delivered": 1790,
        "undelivered": 17,
        "rejected": 6,
        "noAnswer": 2,
        "lastMinute": 48,
    },
}
_NEW_LINK = {
    "name": "Carrier A", "host": "smsc.example.net", "port": 2775, "systemId": "alice01",
    "password": "s3cret", "source": "SMSGW", "throughput": 50,
}  # fmt: skip
_RECENT_NONE = {"since": "2026-05-16T09:32:11.421Z", "submitted": 0, "accepted": 0,
                "delivered": 0, "undelivered": 0, "rejected": 0, "noAnswer": 0,
                "lastMinute": 0}  # fmt: skip
_ADDED = {**_LINK, "state": "new", "recent": _RECENT_NONE,
          "queue": {"waiting": 12, "planned": 0, "inFlight": 0}}  # fmt: skip
_ROUTING = {"mode": "prefix", "prefixes": ["+44", "+49"], "failoverAfter": 30}

EXAMPLES: dict[str, Example] = {
    "sendMessages": Example(
        body=_SEND_BODY, response={**_PENDING, "textMessage": {"text": "Hello from API"}}
    ),
    "sendMessagesBatch": Example(
        body={
            "messages": [
                {
                    "id": "order-1",
                    "phoneNumbers": ["+12025550100"],
                    "textMessage": {"text": "Hi Ann"},
                },
                {"phoneNumbers": ["555"], "textMessage": {"text": "Hi Bob"}},
            ]
        },
        response={
            "accepted": 1,
            "failed": 1,
            "items": [
                {"index": 0, "id": "order-1", "state": "Pending", "error": None},
                {
                    "index": 1,
                    "id": None,
                    "state": None,
                    "error": {
                        "status": 400,
                        "message": "phoneNumbers[0]: '555' has no country code; write it as "
                        "+<country code><number> or set SMSGW_DEFAULT_REGION on the server",
                    },
                },
            ],
        },
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
                "virtual": False,
                "budget": _BUDGET,
            }
        ]
    ),
    "changeDevices": Example(
        path={"id": DEVICE_ID},
        body={"budget": {"perDay": 500}},
        response={
            "id": DEVICE_ID,
            "name": "Google/oriole",
            "createdAt": "2026-05-01T08:00:00.000Z",
            "updatedAt": "2026-05-17T09:32:16.201Z",
            "lastSeen": "2026-05-17T09:32:15.004Z",
            "simCards": [{"slotIndex": 0, "simNumber": 1, "carrierName": "Example"}],
            "connected": True,
            "virtual": False,
            "budget": _BUDGET,
        },
    ),
    "deleteDevices": Example(path={"id": DEVICE_ID}, status=204),
}

WEBHOOK_ID = "sms-received-hook"
_WEBHOOK = {
    "id": WEBHOOK_ID,
    "deviceId": None,
    "url": "https://example.com/sms-hook",
    "event": "sms:received",
    "enabled": True,
    "disabledReason": None,
}
_SIGNING_KEY = {"signingKey": "v4Rz0t8yQm2Kc1WnXb7LsE5pJh3AgUdF"}
_EXPIRES_AT = "2026-05-17T09:47:11.421Z"
_TOKENS = {
    "id": "0FYmFQmGZ7aBo4xOnqdw2",
    "token_type": "Bearer",
    "access_token": "eyJhbGciOiJIUzI1NiJ9.ACCESS.SIGNATURE",
    "refresh_token": "eyJhbGciOiJIUzI1NiJ9.REFRESH.SIGNATURE",
    "expires_at": _EXPIRES_AT,
    "tokenType": "Bearer",
    "accessToken": "eyJhbGciOiJIUzI1NiJ9.ACCESS.SIGNATURE",
    "refreshToken": "eyJhbGciOiJIUzI1NiJ9.REFRESH.SIGNATURE",
    "expiresAt": _EXPIRES_AT,
}
_KEY = {
    "id": "3f9a1c0b7d2e4a68",
    "name": "billing app",
    "scopes": ["messages:send", "messages:read"],
    "state": "live",
    "createdAt": "2026-05-17T09:00:00.000Z",
    "expiresAt": "2027-05-17T00:00:00.000Z",
    "lastUsedAt": None,
    "revokedAt": None,
}
_PULLED = {
    "id": MESSAGE_ID,
    "phoneNumbers": ["+12025550100"],
    "withDeliveryReport": True,
    "state": "Pending",
    "createdAt": "2026-05-17T09:32:11.421Z",
    "message": "Hello from API",
    "textMessage": {"text": "Hello from API"},
}

_REPLAY = {
    "deviceId": DEVICE_ID,
    "since": "2026-05-16T00:00:00.000Z",
    "until": "2026-05-17T00:00:00.000Z",
    "messageTypes": ["SMS", "MMS"],
    "webhookDelivery": "Batch",
}

EXAMPLES.update(
    {
        # The legacy aliases answer as the routes they stand for.
        "sendMessage": EXAMPLES["sendMessages"],
        "listMessage": EXAMPLES["listMessages"],
        "getMessage": EXAMPLES["getMessages"],
        "cancelMessage": EXAMPLES["cancelMessages"],
        "listDevice": EXAMPLES["listDevices"],
        "changeDevice": EXAMPLES["changeDevices"],
        "list_webhooks_api_3rdparty_v1_webhooks_get": Example(response=[_WEBHOOK]),
        "register_webhook_api_3rdparty_v1_webhooks_post": Example(
            body={"id": WEBHOOK_ID, "url": _WEBHOOK["url"], "event": "sms:received"},
            response=_WEBHOOK,
            status=201,
        ),
        "delete_webhook_api_3rdparty_v1_webhooks__id__delete": Example(
            path={"id": WEBHOOK_ID}, status=204
        ),
        "deliveries_api_3rdparty_v1_webhooks__id__deliveries_get": Example(
            path={"id": WEBHOOK_ID},
            response=[
                {
                    "eventId": "01a2b3c4-d5e6-7f80-9a1b-2c3d4e5f6a7b",
                    "event": "sms:received",
                    "startedAt": "2026-05-17T09:40:02.118Z",
                    "finishedAt": "2026-05-17T09:40:02.301Z",
                    "statusCode": 200,
                    "durationMs": 183,
                    "error": None,
                }
            ],
        ),
        "get_signing_key_api_3rdparty_v1_webhooks_signing_key_get": Example(response=_SIGNING_KEY),
        "rotate_signing_key_api_3rdparty_v1_webhooks_signing_key_post": Example(
            response=_SIGNING_KEY
        ),
        "issue_token_api_3rdparty_v1_auth_token_post": Example(
            body={"scopes": ["messages:send"], "ttl": 900}, response=_TOKENS, status=201
        ),
        "refresh_token_api_3rdparty_v1_auth_token_refresh_post": Example(
            response=_TOKENS, status=201
        ),
        "create_key_api_3rdparty_v1_auth_keys_post": Example(
            body={
                "name": "billing app",
                "scopes": ["messages:send", "messages:read"],
                "expiresAt": "2027-05-17T00:00:00Z",
            },
            response={**_KEY, "key": "smsgw_3f9a1c0b7d2e4a68_SECRET-SHOWN-ONLY-ONCE"},
            status=201,
        ),
        "list_keys_api_3rdparty_v1_auth_keys_get": Example(
            response=[{**_KEY, "lastUsedAt": "2026-05-17T09:32:00.000Z"}]
        ),
        "listLinks": Example(response=[_LINK]),
        "getLink": Example(path={"id": LINK_ID}, response=_LINK),
        "createLink": Example(body=_NEW_LINK, response=_ADDED, status=201),
        "deleteLink": Example(path={"id": LINK_ID}, status=204),
        "get_routing_api_3rdparty_v1_links_routing_get": Example(response=_ROUTING),
        "put_routing_api_3rdparty_v1_links_routing_put": Example(body=_ROUTING, response=_ROUTING),
        "list_opt_outs_api_3rdparty_v1_opt_outs_get": Example(
            query="limit=20&offset=0", response=[_OPTED_OUT]
        ),
        "add_opt_out_api_3rdparty_v1_opt_outs_post": Example(
            body={"phoneNumber": "+12025550188"},
            response={**_OPTED_OUT, "phoneNumber": "+12025550188", "source": "api"},
            status=201,
        ),
        "get_logs_api_3rdparty_v1_logs_get": Example(
            query="from=2026-05-17T00:00:00.000Z&to=2026-05-18T00:00:00.000Z",
            response=[
                {
                    "id": 42,
                    "createdAt": "2026-05-17T09:32:15.004Z",
                    "module": "messages",
                    "priority": "INFO",
                    "message": f"message {MESSAGE_ID} is Delivered",
                    "context": {
                        "messageId": MESSAGE_ID,
                        "state": "Delivered",
                        "deviceId": DEVICE_ID,
                    },
                }
            ],
        ),
        "whoami_api_mobile_v1_device_get": Example(
            response={
                "externalIp": "203.0.113.7",
                "device": {
                    "id": DEVICE_ID,
                    "name": "Google/oriole",
                    "createdAt": "2026-05-01T08:00:00.000Z",
                    "updatedAt": "2026-05-17T09:30:00.000Z",
                    "lastSeen": "2026-05-17T09:32:15.004Z",
                },
            }
        ),
        "register_api_mobile_v1_device_post": Example(
            body={"name": "Google/oriole", "pushToken": None},
            response={
                "id": DEVICE_ID,
                "token": "Vf0fkyEFmP4UuNlp9oy8t",
                "login": "alice",
            },
            status=201,
        ),
        "user_code_api_mobile_v1_user_code_get": Example(
            response={"code": "482913", "validUntil": "2026-05-17T09:37:11.421Z"}
        ),
        "pull_api_mobile_v1_message_get": Example(query="order=lifo", response=[_PULLED]),
        "report_api_mobile_v1_message_patch": Example(
            body=[
                {
                    "id": MESSAGE_ID,
                    "state": "Delivered",
                    "recipients": [
                        {"phoneNumber": "+12025550100", "state": "Delivered", "error": None}
                    ],
                    "states": {
                        "Processed": "2026-05-17T09:32:12.030Z",
                        "Sent": "2026-05-17T09:32:13.512Z",
                        "Delivered": "2026-05-17T09:32:15.004Z",
                    },
                }
            ],
            status=204,
        ),
        "update_api_mobile_v1_device_patch": Example(
            body={
                "id": DEVICE_ID,
                "pushToken": None,
                "simCards": [
                    {
                        "slotIndex": 0,
                        "simNumber": 1,
                        "carrierName": "Example",
                        "phoneNumber": "0100",
                    }
                ],
            },
            status=204,
        ),
        "change_password_api_mobile_v1_user_password_patch": Example(
            body={"currentPassword": "correct horse battery", "newPassword": "a longer passphrase"},
            status=204,
        ),
        "refresh_api_3rdparty_v1_inbox_refresh_post": Example(body=_REPLAY, status=202),
        "export_api_3rdparty_v1_messages_inbox_export_post": Example(
            body={"deviceId": DEVICE_ID, "since": _REPLAY["since"], "until": _REPLAY["until"]},
            status=202,
        ),
    }
)
