"""The mobile API, for phones running SMS Gateway for Android: /api/mobile/v1 (and /mobile/v1)."""

from typing import Any

from fastapi import APIRouter

from smsgw.api.mobile import device, events, hooks, messages, sync

#: How phones authenticate, as OpenAPI security schemes (the app adds the 3rd-party ones).
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "phoneToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A phone's token, from its registration (`POST /mobile/v1/device`).",
    },
    "userCode": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Code <one-time code>` from `GET /mobile/v1/user/code`.",
    },
    "privateToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The server's `SMSGW_PRIVATE_TOKEN`, where it is set.",
    },
}
#: Every operation's security, by (method, path under the prefix); the rest take a phone token.
SECURITY: dict[tuple[str, str], list[dict[str, list[str]]]] = {
    # Anonymous registration, where enabled, adds `{}` (app.py: it depends on the settings).
    ("post", "/device"): [{"basicAuth": []}, {"userCode": []}, {"privateToken": []}],
    ("get", "/device"): [{"phoneToken": []}, {}],  # answers without a token too
    ("get", "/user/code"): [{"basicAuth": []}],
    ("post", hooks.HOOK_PATH): [],  # the secret in the URL is the credential
}
PHONE: list[dict[str, list[str]]] = [{"phoneToken": []}]


def build_router() -> APIRouter:
    router = APIRouter()
    for module in (device, messages, hooks, sync, events):
        router.include_router(module.router)
    return router
