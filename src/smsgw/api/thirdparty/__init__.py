"""The 3rd-party API, served under /api/3rdparty/v1 (and /3rdparty/v1)."""

from fastapi import APIRouter, Depends

from smsgw.api.deps import authorize
from smsgw.api.thirdparty import auth, devices, inbox, logs, messages, settings, webhooks


def build_router() -> APIRouter:
    # The guard authenticates and checks every route's scope from the one table (scopes.py).
    router = APIRouter(dependencies=[Depends(authorize)])
    router.include_router(messages.router)
    router.include_router(devices.router)
    router.include_router(webhooks.router)
    router.include_router(inbox.router)
    router.include_router(settings.router)
    router.include_router(logs.router)
    router.include_router(auth.router)
    return router
