"""The API for your applications (`api/apps`, beside `api/mobile`: the API for phones),
served under /api/3rdparty/v1 (and /3rdparty/v1), the URL the upstream clients use."""

from fastapi import APIRouter, Depends

from smsgw.api.apps import (
    auth,
    batches,
    devices,
    exports,
    inbox,
    keys,
    link_routing,
    links,
    logs,
    messages,
    optouts,
    settings,
    webhooks,
)
from smsgw.api.deps import authorize


def build_router() -> APIRouter:
    # The guard authenticates and checks every route's scope from the one table (scopes.py).
    router = APIRouter(dependencies=[Depends(authorize)])
    router.include_router(messages.router)
    router.include_router(batches.router)
    router.include_router(devices.router)
    router.include_router(link_routing.router)  # before links' /links/{id}
    router.include_router(links.router)
    router.include_router(webhooks.router)
    router.include_router(inbox.router)
    router.include_router(exports.router)
    router.include_router(optouts.router)
    router.include_router(settings.router)
    router.include_router(logs.router)
    router.include_router(auth.router)
    router.include_router(keys.router)
    return router
