"""The server under test: smsgw's own app plus a no-storage baseline route, run like `smsgw serve`.

`python -m bench.ingest.server` reads the usual `SMSGW_*` settings. The app is the one
`create_app` builds (same middleware, error handlers and lifespan); this module only adds

    POST /bench/noop

which goes through the same stack as `POST /api/3rdparty/v1/messages`: the same Basic-auth
dependency (`CurrentUser`, so the user lookup and credential cache too), the same JSON body
parsing and validation into `SendMessageRequest`, and a JSON answer; it stores nothing. The
difference between the two endpoints is the cost of queueing a message durably.
"""

from __future__ import annotations

import sys

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from smsgw.api import deps
from smsgw.app import create_app
from smsgw.cli.serve import run_server, supervise
from smsgw.config import Settings, load_settings
from smsgw.events.bus import Cluster
from smsgw.messages.schemas import SendMessageRequest

BASELINE_PATH = "/bench/noop"


def build_app(settings: Settings, cluster: Cluster | None = None) -> FastAPI:
    """smsgw's application with the baseline route mounted beside the real API."""
    app = create_app(settings, cluster)

    async def noop(body: SendMessageRequest, user_id: deps.CurrentUser) -> JSONResponse:
        """Authenticate and parse exactly like `POST /messages`, then store nothing."""
        return JSONResponse({"user": user_id, "recipients": len(body.phoneNumbers)})

    app.add_api_route(BASELINE_PATH, noop, methods=["POST"], include_in_schema=False)
    # Routes are matched in order: put the baseline first, as the API it stands for is.
    app.router.routes.insert(0, app.router.routes.pop())
    return app


def main() -> None:
    settings = load_settings()
    if settings.workers == 1:
        run_server(build_app(settings), settings)
    else:
        sys.exit(supervise(settings, build_app))


if __name__ == "__main__":
    main()
