"""The mobile API, for phones running SMS Gateway for Android: /api/mobile/v1 (and /mobile/v1)."""

from fastapi import APIRouter

from smsgw.api.mobile import device, events, hooks, messages, sync


def build_router() -> APIRouter:
    router = APIRouter()
    for module in (device, messages, hooks, sync, events):
        router.include_router(module.router)
    return router
