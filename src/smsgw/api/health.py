"""Health probes (no auth; at the root and under the 3rd-party prefixes) and /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from smsgw import metrics
from smsgw.api.deps import AppContext
from smsgw.api.errors import UNAUTHORIZED, error_response
from smsgw.health import service as health
from smsgw.health.service import Check, Probe

router = APIRouter(tags=["Health"])
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Healthy (`pass`) or degraded (`warn`)."},
    503: {"description": "A check failed (`fail`); the body says which."},
}


def _answer(checks: dict[str, Check]) -> JSONResponse:
    status, body = health.report(checks)
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _probe(request: Request) -> tuple[Probe, float]:
    probe: Probe = request.app.state.probe
    return probe, request.app.state.worker.last_tick


async def ready(request: Request) -> JSONResponse:
    """Readiness: database round trip, worker loop alive, free disk space."""
    return _answer(await health.readiness(*_probe(request)))


async def live(request: Request) -> JSONResponse:
    """Liveness: the worker loop completes its rounds."""
    return _answer(health.liveness(*_probe(request)))


async def startup(request: Request) -> JSONResponse:
    """Start-up: passes once the server has started (migrations done, database open)."""
    return _answer({})


for path, endpoint in (
    ("/health", ready),
    ("/health/ready", ready),
    ("/health/live", live),
    ("/health/startup", startup),
):
    summary = (endpoint.__doc__ or "").split(":")[0]
    router.add_api_route(path, endpoint, methods=["GET"], responses=RESPONSES, summary=summary)


metrics_router = APIRouter(tags=["Metrics"])


@metrics_router.get(
    "/metrics",
    summary="Prometheus metrics",
    responses={200: {"content": {"text/plain": {}}}, 401: {"description": "Token required."}},
)
async def metrics_page(request: Request) -> Response:
    """Prometheus text exposition; needs `Authorization: Bearer <SMSGW_METRICS_TOKEN>` when
    that setting is set."""
    context: AppContext = request.app.state.context
    token = context.settings.metrics_token
    secret = token.get_secret_value() if token is not None else None
    if not metrics.authorized(secret, request.headers.get("authorization", "")):
        return error_response(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
    body = await metrics.exposition(context.db, context.hub)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
