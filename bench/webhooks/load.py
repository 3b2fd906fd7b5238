"""The phases of bench/webhooks: what a phone sends smsgw, and the baseline without smsgw.

One phone of the account is registered with `POST /api/mobile/v1/device`, two webhooks point at
the receiver (`sms:sent`, `sms:received`). Each phase sends `events` requests from `clients`
concurrent clients (as fast as answered, or paced at `rate` a second), notes when smsgw
answered each, and reads back from the receiver when each event arrived:

- reports: `PATCH /api/mobile/v1/message` reporting one message `Sent` (one `sms:sent` each;
  the messages are queued for the phone, pinned to it, before the phase starts);
- posts: the phone's hub post of an `sms:received` to `/api/mobile/v1/hooks/{device}/{secret}`
  (one received SMS each, stored in the inbox and forwarded);
- baseline: no smsgw at all: `concurrency` tasks sign and POST envelopes to the same receiver
  with smsgw's own request code (`smsgw.webhooks.sender.post`, a session made as the
  delivery worker makes its own).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import httpx

from bench.common import cpu_seconds, machine_busy_seconds
from bench.fleet.fleet import api_client, percentile, post_all, self_cpu
from bench.fleet.server import PASSWORD, Server
from bench.webhooks.receiver import Arrival, ReceiverProcess
from smsgw.domain import clock
from smsgw.webhooks import guard, sender
from smsgw.webhooks.repository import Due

MOBILE = "/api/mobile/v1"
THIRDPARTY = "/api/3rdparty/v1"
NUMBER = "+12025550100"  # what post_all sends to
LOGIN = "bench"
EVENTS = ("sms:sent", "sms:received")


@dataclass
class Setup:
    """The server, its account's phone and webhooks, and the receiver they point at."""

    server: Server
    api: httpx.AsyncClient  # Basic auth of the account
    device_id: str
    token: str
    hook_url: str  # where the phone posts its sms:received
    signing_key: str
    receiver_port: int
    concurrency: int  # SMSGW_WEBHOOKS_CONCURRENCY of the server, and of the baseline
    receiver: ReceiverProcess | None = None


@dataclass
class Phase:
    """One measured phase: N events through one path."""

    path: str  # baseline | reports | posts
    mode: str  # burst (as fast as answered) | paced (at `offered_per_s`)
    round: int
    events: int
    clients: int
    offered_per_s: float | None
    load_per_s: float  # requests answered per second (reports, posts, baseline POSTs)
    answer_p50_ms: float
    answer_p99_ms: float
    delivered: int
    delivered_per_s: float
    delay_p50_ms: float
    delay_p99_ms: float
    delay_max_ms: float
    delay_min_ms: float
    lost: int
    duplicates: int
    strangers: int
    bad_signatures: int
    server_cpu_ms_per_event: float | None
    receiver_cpu_ms_per_event: float | None
    client_cpu_percent: float
    other_cpu_percent: float | None
    seconds: float
    ratio: float | None = None  # delivered/s over the same round's baseline/s
    problems: list[str] = field(default_factory=list)


async def prepare(server: Server, receiver_port: int, concurrency: int) -> Setup:
    """Register the phone and the webhooks; read the signing key and the phone's hub URL."""
    api = httpx.AsyncClient(
        base_url=server.base_url, auth=(LOGIN, PASSWORD), timeout=30, trust_env=False
    )
    answer = await api.post(f"{MOBILE}/device", json={"name": "bench-phone"})
    answer.raise_for_status()
    device_id, token = answer.json()["id"], answer.json()["token"]
    for event in EVENTS:
        url = f"http://127.0.0.1:{receiver_port}/hook"
        answer = await api.post(f"{THIRDPARTY}/webhooks", json={"url": url, "event": event})
        answer.raise_for_status()
    key_answer = await api.get(f"{THIRDPARTY}/webhooks/signing/key")
    key_answer.raise_for_status()
    async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as phone:
        hooks = await phone.get(f"{MOBILE}/webhooks", headers={"Authorization": f"Bearer {token}"})
        hooks.raise_for_status()
    hook_url = next(h["url"] for h in hooks.json() if h["event"] == "sms:received")
    return Setup(
        server, api, device_id, token, hook_url, key_answer.json()["signingKey"], receiver_port,
        concurrency,
    )  # fmt: skip


async def queue_messages(setup: Setup, count: int) -> list[str]:
    """`count` messages pinned to the phone (so its reports are about messages it holds)."""
    started: dict[str, float] = {}
    async with api_client(setup.server, LOGIN, 4) as api:  # post_all takes an aiohttp client
        await post_all(api, count, 4, started, setup.device_id)
    return list(started)


Send = Callable[[int], Awaitable[str]]


async def drive(
    count: int, clients: int, rate: float | None, send: Send, from_start: bool = False
) -> tuple[float, dict[str, float], list[float]]:
    """Run `send(i)` for i < count from `clients` tasks; (start, answered at per key, rtts).

    `from_start`: note when each request started rather than when it was answered.
    """
    answered: dict[str, float] = {}
    rtts: list[float] = []
    todo = iter(range(count))
    start = time.monotonic()

    async def client() -> None:
        for number in todo:
            if rate:
                await asyncio.sleep(max(0.0, start + number / rate - time.monotonic()))
            before = time.monotonic()
            key = await send(number)
            after = time.monotonic()
            answered[key] = before if from_start else after
            rtts.append((after - before) * 1000)

    await asyncio.gather(*(client() for _ in range(clients)))
    return start, answered, rtts


def reporter(setup: Setup, phone: httpx.AsyncClient, message_ids: list[str]) -> Send:
    """Each call reports one of `message_ids` Sent, as the app's `PATCH /message` does."""

    async def send(number: int) -> str:
        message_id = message_ids[number]
        at = clock.format_timestamp(datetime.now(UTC))
        body = [{"id": message_id, "state": "Sent", "states": {"Processed": at, "Sent": at},
                 "recipients": [{"phoneNumber": NUMBER, "state": "Sent"}]}]  # fmt: skip
        answer = await phone.patch(f"{MOBILE}/message", json=body)
        if answer.status_code != 204:
            raise RuntimeError(f"PATCH /message answered {answer.status_code}: {answer.text}")
        return message_id

    return send


def poster(setup: Setup, phone: httpx.AsyncClient, tag: str) -> Send:
    """Each call posts one received SMS to the phone's hub URL, as the app's webhooks do."""

    async def send(number: int) -> str:
        message_id = f"{tag}-{number}"
        at = clock.format_timestamp(datetime.now(UTC))
        body = {"id": secrets.token_urlsafe(15), "webhookId": "smsgw-sms-received",
                "event": "sms:received", "deviceId": setup.device_id,
                "payload": {"messageId": message_id, "sender": "+12025550199",
                            "phoneNumber": "+12025550199", "simNumber": 1, "receivedAt": at,
                            "message": f"bench {number}"}}  # fmt: skip
        answer = await phone.post(setup.hook_url, json=body)
        if answer.status_code != 204:
            raise RuntimeError(f"hub post answered {answer.status_code}: {answer.text}")
        return message_id

    return send


def direct(setup: Setup, client: aiohttp.ClientSession, tag: str) -> Send:
    """Each call does what one delivery does minus smsgw: sign and POST an envelope."""
    url = f"http://127.0.0.1:{setup.receiver_port}/hook"
    max_bytes = 64 * 1024

    async def send(number: int) -> str:
        message_id = f"{tag}-{number}"
        now = clock.now()
        item = Due(
            pk=number, attempts=0, next_at=now, created_at=now, webhook_pk=1,
            webhook_id="bench", url=url, user_id=1, event_id=secrets.token_urlsafe(15),
            event="sms:received", device_id=setup.device_id,
            payload={"messageId": message_id, "sender": "+12025550199",
                     "phoneNumber": "+12025550199", "simNumber": 1,
                     "receivedAt": clock.format_timestamp(now), "message": f"bench {number}"},
        )  # fmt: skip
        outcome = await sender.post(client, item, setup.signing_key, max_bytes, guarded=False)
        if outcome.status != 204:
            raise RuntimeError(f"baseline POST: {outcome.status} {outcome.error}")
        return message_id

    return send


def worker_client() -> aiohttp.ClientSession:
    """A session made as the delivery worker makes its own (workers/webhooks.py), in the
    running event loop."""
    return guard.session(allow_private=True, timeout=10.0)


def phone_client(setup: Setup, clients: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=setup.server.base_url,
        headers={"Authorization": f"Bearer {setup.token}"},
        timeout=30,
        limits=httpx.Limits(max_connections=clients + 2),
        trust_env=False,
    )


async def arrived(receiver: ReceiverProcess, expected: int, within: float) -> float:
    """Wait until `expected` requests reached the receiver (or `within` s); when it was so."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await receiver.count() >= expected:
            break
        await asyncio.sleep(0.05)
    return time.monotonic()


async def run_phase(
    setup: Setup,
    path: str,
    events: int,
    clients: int,
    rate: float | None,
    round_number: int,
    deliver_within: float,
) -> Phase:
    """One phase on a receiver emptied first; every event must arrive exactly once."""
    receiver = setup.receiver
    assert receiver is not None
    await receiver.reset()
    tag = f"{path}-{round_number}-{rate or 'burst'}-{secrets.token_hex(3)}"
    message_ids = await queue_messages(setup, events) if path == "reports" else []
    workers = setup.concurrency if path == "baseline" else clients
    async with phone_client(setup, clients) as phone, worker_client() as plain:
        if path == "reports":
            send = reporter(setup, phone, message_ids)
        elif path == "posts":
            send = poster(setup, phone, tag)
        else:
            send = direct(setup, plain, tag)
        readings = _Readings(setup.server.pid, receiver.pid)
        start, answered, rtts = await drive(events, workers, rate, send, path == "baseline")
        done = await arrived(receiver, events, deliver_within)
        readings.stop(done - start)
        await asyncio.sleep(0.5)  # a duplicate sent late would show up now
    got = await receiver.arrivals()
    return _phase(path, round_number, events, workers, rate, (start, answered, rtts), got, readings)


class _Readings:
    """CPU of the server, the receiver, this process and the whole machine over a phase."""

    def __init__(self, server_pid: int, receiver_pid: int) -> None:
        self.pids = (server_pid, receiver_pid)
        self.before = [cpu_seconds(server_pid), cpu_seconds(receiver_pid)]
        self.client = self_cpu()
        self.busy = machine_busy_seconds()
        self.spent: list[float | None] = [None, None]
        self.client_spent = 0.0
        self.other: float | None = None
        self.wall = 0.0

    def stop(self, wall: float) -> None:
        self.wall = max(wall, 1e-6)
        after = [cpu_seconds(pid) for pid in self.pids]
        self.spent = [
            None if a is None or b is None else a - b
            for a, b in zip(after, self.before, strict=True)
        ]
        self.client_spent = self_cpu() - self.client
        busy = machine_busy_seconds()
        if self.busy is not None and busy is not None and None not in self.spent:
            ours = sum(s or 0.0 for s in self.spent) + self.client_spent
            foreign = max((busy - self.busy) - ours, 0.0)
            self.other = round(foreign * 100 / ((os.cpu_count() or 1) * self.wall), 1)

    def per_event_ms(self, which: int, events: int) -> float | None:
        spent = self.spent[which]
        return None if spent is None else round(spent * 1000 / events, 2)


def _phase(
    path: str,
    round_number: int,
    events: int,
    workers: int,
    rate: float | None,
    load: tuple[float, dict[str, float], list[float]],
    got: list[Arrival],
    readings: _Readings,
) -> Phase:
    start, answered, rtts = load
    problems: list[str] = []
    label = f"{path} round {round_number}" + (f" at {rate:g}/s" if rate else "")
    counts = Counter(a.event_id for a in got)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    first: dict[str, float] = {}
    for item in got:
        first.setdefault(item.key, item.at)
    lost = len(set(answered) - set(first))
    strangers = len(set(first) - set(answered))
    bad = sum(1 for a in got if not a.signed)
    for count, what in ((lost, "lost (never arrived)"), (duplicates, "arrived more than once"),
                        (strangers, "arrived that were never sent"),
                        (bad, "arrived with a bad signature")):  # fmt: skip
        if count:
            problems.append(f"{label}: {count} event(s) {what}")
    delays = [(first[k] - answered[k]) * 1000 for k in answered if k in first] or [float("nan")]
    last = max(first.values(), default=start)
    elapsed = max(last - start, 1e-6)
    return Phase(
        path=path, mode="paced" if rate else "burst", round=round_number, events=events,
        clients=workers, offered_per_s=rate,
        load_per_s=round(len(answered) / max(max(answered.values()) - start, 1e-6), 1),
        answer_p50_ms=round(percentile(rtts, 50), 2), answer_p99_ms=round(percentile(rtts, 99), 2),
        delivered=len(first), delivered_per_s=round(len(first) / elapsed, 1),
        delay_p50_ms=round(percentile(delays, 50), 1),
        delay_p99_ms=round(percentile(delays, 99), 1),
        delay_max_ms=round(max(delays), 1), delay_min_ms=round(min(delays), 1),
        lost=lost, duplicates=duplicates, strangers=strangers, bad_signatures=bad,
        server_cpu_ms_per_event=readings.per_event_ms(0, events),
        receiver_cpu_ms_per_event=readings.per_event_ms(1, events),
        client_cpu_percent=round(readings.client_spent * 100 / readings.wall, 1),
        other_cpu_percent=readings.other, seconds=round(readings.wall, 2), problems=problems,
    )  # fmt: skip
