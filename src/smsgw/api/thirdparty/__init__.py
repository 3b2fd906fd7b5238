"""The 3rd-party API, served under /api/3rdparty/v1 (and /3rdparty/v1)."""

from fastapi import APIRouter

from smsgw.api.thirdparty import devices, inbox, messages, webhooks


def build_router() -> APIRouter:
    router = APIRouter()
    router.include_router(messages.router)
    router.include_router(devices.router)
    router.include_router(webhooks.router)
    router.include_router(inbox.router)
    return router
