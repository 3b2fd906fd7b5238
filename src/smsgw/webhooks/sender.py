"""One webhook request, and what to do after it (deliver, retry later, give up, disable).

Requests carry the upstream envelope `{deviceId, event, id, webhookId, payload}`, signed
(`X-Signature`, `X-Timestamp`); redirects are not followed; at most `max_bytes` of the answer
is read. The text of messages is never logged: only status codes and error kinds are.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp

from smsgw import __version__
from smsgw.config import Settings
from smsgw.webhooks import guard, repository, signing
from smsgw.webhooks.repository import Due

USER_AGENT = f"smsgw/{__version__} (webhooks)"
RETRY_STATUSES = {408, 425, 429}


@dataclass(frozen=True)
class Outcome:
    status: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True)
class Plan:
    """After an attempt: the delivery's new state, when to try again, whether to disable."""

    state: str
    next_at: datetime
    disable_reason: str | None = None


def body_of(item: Due) -> bytes:
    envelope = {
        "deviceId": item.device_id, "event": item.event, "id": item.event_id,
        "webhookId": item.webhook_id, "payload": item.payload,
    }  # fmt: skip
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


def _describe(error: BaseException) -> str:
    kind = type(error).__name__
    text = str(error) or kind
    return (text if text.startswith("refused") else f"{kind}: {text}")[:256]


async def post(
    client: aiohttp.ClientSession,
    item: Due,
    key: str,
    max_bytes: int,
    deadline: float | None = None,
    guarded: bool = True,
) -> Outcome:
    """POST one delivery on a session of `guard.session`; never raises for network trouble
    (it is in the Outcome). `guarded`: the session is the guarded one (literal addresses
    are then checked here).

    `deadline` bounds the whole exchange (the session's timeouts bound each step only, so a
    receiver trickling its answer could otherwise outlast the delivery's lease and another
    server process would send it again)."""
    body = body_of(item)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               **signing.headers(key, body, int(time.time()))}  # fmt: skip
    started = time.monotonic()
    try:
        async with asyncio.timeout(deadline) as scope:
            if guarded:
                guard.check_literal(item.url)
            async with client.post(
                item.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                read = 0
                async for chunk in response.content.iter_any():
                    read += len(chunk)
                    if read >= max_bytes:
                        break
                status = response.status
    except TimeoutError as error:
        if scope.expired():
            return Outcome(None, f"no complete answer within {deadline:g} s", _since(started))
        if isinstance(error, aiohttp.ConnectionTimeoutError) and client.timeout.connect:
            # (aiohttp's text is the whole URL, which may hold the owner's token)
            text = f"{type(error).__name__}: no connection within {client.timeout.connect:g} s"
            return Outcome(None, text, _since(started))
        return Outcome(None, _describe(error), _since(started))  # a step's own timeout
    except guard.Refused as error:
        return Outcome(None, str(error)[:256], _since(started))
    except (aiohttp.InvalidURL, ValueError) as error:  # a URL aiohttp cannot send to
        return Outcome(None, f"invalid URL: {error}"[:256], _since(started))
    except (aiohttp.ClientError, OSError) as error:
        return Outcome(None, _describe(error), _since(started))
    return Outcome(status, None if 200 <= status < 300 else f"HTTP {status}", _since(started))


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def backoff(settings: Settings, attempts: int) -> float:
    """Seconds before attempt `attempts + 1`: exponential, capped, with jitter (50-100 %)."""
    base = settings.webhooks_retry_base_seconds * 2.0 ** max(attempts - 1, 0)
    return min(base, settings.webhooks_retry_max_seconds) * random.uniform(0.5, 1.0)


def plan(settings: Settings, item: Due, outcome: Outcome, now: datetime) -> Plan:
    """What follows attempt number `item.attempts + 1` that ended with `outcome`."""
    status, attempts = outcome.status, item.attempts + 1
    if status is not None and 200 <= status < 300:
        return Plan(repository.DELIVERED, now)
    if status == 410:
        return Plan(repository.DISABLED, now, "the receiver answered 410 Gone")
    retryable = status is None or status >= 500 or status in RETRY_STATUSES
    wait = timedelta(seconds=backoff(settings, attempts))
    too_old = now + wait - item.created_at > timedelta(seconds=settings.webhooks_max_age_seconds)
    if not retryable or attempts >= settings.webhooks_max_attempts or too_old:
        return Plan(repository.FAILED, now)
    return Plan(repository.PENDING, now + wait)
