"""Inbox exports in process: closing races between processes, a failing export isolated,
event sizes bounded, old exports pruned; and the phone's event stream never left registered
when what runs before its first frame fails."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest

from smsgw.api.mobile import events as event_stream
from smsgw.config import Settings
from smsgw.events.hub import EventHub
from smsgw.inbox import exports


def stream_context(settings: Settings) -> Any:
    """What the event-stream route needs of the application context (no database use)."""
    return SimpleNamespace(hub=EventHub(), presence=None, settings=settings, db=None)


async def noted(*_args: object) -> None:
    return None


@pytest.mark.parametrize("failure", ["error", "cancelled"])
def test_a_failure_before_the_first_frame_leaves_no_stream_registered(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    async def broken(*_args: object) -> None:
        raise RuntimeError("database gone")

    async def stuck(*_args: object) -> None:
        await asyncio.Event().wait()

    sending: Callable[..., Awaitable[None]] = broken if failure == "error" else stuck
    monkeypatch.setattr(exports, "send_pending", sending)
    monkeypatch.setattr(event_stream.logs, "note_phone", noted)
    context = stream_context(settings)
    device = cast(Any, SimpleNamespace(device_id="phone1", user_id=1))

    async def scenario() -> None:
        opening = asyncio.create_task(event_stream.events(device, context))
        if failure == "error":
            with pytest.raises(RuntimeError):
                await opening
        else:
            await asyncio.sleep(0.05)
            assert context.hub.is_connected("phone1")  # registered while it waits
            opening.cancel()
            with pytest.raises(asyncio.CancelledError):
                await opening
        assert not context.hub.is_connected("phone1") and context.hub.stream_count() == 0

    asyncio.run(scenario())
