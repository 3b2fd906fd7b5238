"""The dashboard's live updates: one SSE stream per open page, a `changed` event per notice.

The page then fetches its own fragment again (the same HTML the server renders), so the
stream carries no message data and the page can never show a state the server would not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from smsgw.events.user_feed import feed_of
from smsgw.web.common import NotSignedIn, visitor

router = APIRouter()


async def changes(request: Request, user_id: int, keepalive: float) -> AsyncIterator[str]:
    feed = feed_of(request.app.state.context.db)
    wakeup = feed.listen(user_id)
    try:
        yield "retry: 2000\nevent: ready\ndata: {}\n\n"
        while not await request.is_disconnected():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), keepalive)
            if feed.closing:  # the server is stopping: the page reconnects by itself
                return
            if wakeup.is_set():
                wakeup.clear()
                yield "event: changed\ndata: {}\n\n"
            else:
                yield ": keepalive\n\n"
    finally:
        feed.stop(user_id, wakeup)


@router.get("/dashboard/live")
async def live(request: Request) -> Response:
    try:
        who = await visitor(request)
    except NotSignedIn:
        return Response("Sign in first.", status_code=401, media_type="text/plain")
    keepalive = who.context.settings.web_live_keepalive_seconds
    return StreamingResponse(
        changes(request, who.user_id, keepalive),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
