"""Server-Sent Events: how a phone learns, within a second, that there is work for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse

from smsgw.api.deps import Context, CurrentDevice
from smsgw.api.mobile.device import ERRORS
from smsgw.events.hub import Event, PhoneEvent
from smsgw.inbox import exports
from smsgw.logs import service as logs

router = APIRouter(tags=["Mobile"])
KEEPALIVE = ":keepalive\n\n"


@router.get(
    "/events",
    responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}},
    summary="Follow events (server-sent)",
)
async def events(device: CurrentDevice, context: Context) -> Response:
    """A stream of `event:`/`data:` frames, with a keep-alive comment every 15 s."""
    hub, presence = context.hub, context.presence
    if hub.closing:  # the phone's next try reaches this server once back, or another node
        body = {"message": "the server is stopping; connect again in a moment"}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
    stream, only = hub.open(device.device_id, device.user_id)
    keepalive = context.settings.sse_keepalive_seconds
    try:  # until the generator below runs, its `finally` cannot close the stream
        if only:  # event log: the phone came online (its first open stream)
            await logs.note_phone(context.db, device.user_id, device.device_id, "connected")
        # Inbox refreshes asked while it was away (sent to the stream, so after `open`):
        # queued behind the first frames below.
        await exports.send_pending(context.db, hub, [device.device_id])
    except BaseException:  # an error, or the phone gone (cancelled): no stream left behind
        hub.close(device.device_id, device.user_id, stream)
        raise

    async def frames() -> AsyncIterator[str]:
        try:
            if only:  # the phone syncs webhooks and settings at once, not after a restart
                yield Event(PhoneEvent.WEBHOOKS_UPDATED).frame()
                yield Event(PhoneEvent.SETTINGS_UPDATED).frame()
            else:
                yield KEEPALIVE
            while True:
                try:
                    event = await asyncio.wait_for(stream.queue.get(), keepalive)
                except TimeoutError:
                    frame = KEEPALIVE
                else:
                    if event is None:  # the server is stopping (hub.end_streams)
                        return
                    frame = event.frame()
                # Every frame, not only keep-alives: a phone sent events more often than
                # the keep-alive interval must not look silent to the stale-claim release.
                presence.mark(device.device_id)
                yield frame
        finally:
            hub.close(device.device_id, device.user_id, stream)
            presence.mark(device.device_id)
            if not hub.is_connected(device.device_id):  # event log: its last stream closed
                logs.note_phone_later(context.db, device.user_id, device.device_id, "disconnected")

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(frames(), media_type="text/event-stream", headers=headers)
