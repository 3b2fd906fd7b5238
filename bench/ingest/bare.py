"""The bare app: a FastAPI application of the same shape as `POST /messages`, and nothing else.

`python -m bench.ingest.bare` serves, at the same path as smsgw's send,

    POST /api/3rdparty/v1/messages

as anyone would write it with FastAPI: the body declared as the same pydantic model
(`SendMessageRequest`, so the same JSON parsing and validation), and an answer of the message
state's shape (an id, the state, one recipient per number, the timestamps) with a `Location`
header, rendered by `JSONResponse`. No authentication, no middleware, no storage, no phone
number parsing. It is served exactly as smsgw is (`cli/serve`: uvicorn with uvloop and
httptools, the same log level and so the same access log, `SMSGW_WORKERS` processes on one
port), so what smsgw spends per request beyond this is what authenticating, checking and
storing a message costs (issue 17, goal 5).
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from smsgw.cli.serve import run_server, supervise
from smsgw.config import Settings, load_settings
from smsgw.events.bus import Cluster
from smsgw.messages.schemas import SendMessageRequest

PATH = "/api/3rdparty/v1/messages"


def build_app(_settings: Settings, _cluster: Cluster | None = None) -> FastAPI:
    """One route, declared the plain FastAPI way."""
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.post(PATH)
    async def send(body: SendMessageRequest) -> JSONResponse:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        message_id = str(uuid.uuid4())
        state: dict[str, Any] = {
            "id": message_id,
            "deviceId": None,
            "state": "Pending",
            "isHashed": False,
            "isEncrypted": body.isEncrypted,
            "recipients": [
                {"phoneNumber": number, "state": "Pending", "error": None}
                for number in body.phoneNumbers
            ],
            "states": {"Pending": now},
            "createdAt": now,
            "withDeliveryReport": body.withDeliveryReport,
            "priority": body.priority,
        }
        if body.textMessage is not None:
            state["textMessage"] = {"text": body.textMessage.text}
        return JSONResponse(state, headers={"Location": f"{PATH}/{message_id}"})

    return app


def main() -> None:
    # Nothing to migrate nor any account to make: the app has no database.
    settings = load_settings().model_copy(
        update={"auto_migrate": False, "bootstrap_account": False}
    )
    if settings.workers == 1:
        run_server(build_app(settings), settings)
    else:
        sys.exit(supervise(settings, build_app))


if __name__ == "__main__":
    main()
