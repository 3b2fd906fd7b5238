"""The requests bench/data times, one at a time from one client, against a running server."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.fleet.fleet import percentile

MESSAGES = "/api/3rdparty/v1/messages"
MOBILE = "/api/mobile/v1"
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')
BODY = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "bench"}}


@dataclass
class Timing:
    """Latencies of one kind of request, in milliseconds."""

    kind: str
    request: str
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of(cls, kind: str, request: str, samples: list[float]) -> Timing:
        return cls(
            kind,
            request,
            len(samples),
            round(percentile(samples, 50), 2),
            round(percentile(samples, 99), 2),
            round(max(samples), 2),
            round(sum(samples) / len(samples), 2),
        )


def timed(
    client: httpx.Client, method: str, url: str, **kwargs: Any
) -> tuple[float, httpx.Response]:
    """One request; its latency (ms, until the whole body is read). Raises on a non-2xx."""
    started = time.perf_counter()
    answer = client.request(method, url, **kwargs)
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code >= 300:
        raise RuntimeError(f"{method} {url} answered {answer.status_code}: {answer.text[:300]}")
    return elapsed, answer


def next_url(answer: httpx.Response) -> str | None:
    """The `rel="next"` URL of a list's Link header, if any."""
    found = _NEXT.search(answer.headers.get("Link", ""))
    return found.group(1) if found else None


def repeat(client: httpx.Client, url: str, count: int) -> list[float]:
    return [timed(client, "GET", url)[0] for _ in range(count)]


def cursor_pages(client: httpx.Client, total: int, count: int, limit: int) -> list[float]:
    """Pages reached by a cursor at ten depths spread over the list: at each, a page by
    `skip` (not timed) gives a Link, then `count / 10` pages are followed by their Links."""
    samples: list[float] = []
    depths = 10
    for number in range(depths):
        skip = total * number // depths
        _, answer = timed(client, "GET", MESSAGES, params={"skip": skip, "limit": limit})
        for _ in range(count // depths):
            url = next_url(answer)
            if url is None:
                break
            elapsed, answer = timed(client, "GET", url)
            samples.append(elapsed)
    return samples


def by_id(client: httpx.Client, ext_ids: list[str]) -> list[float]:
    return [timed(client, "GET", f"{MESSAGES}/{ext_id}")[0] for ext_id in ext_ids]


@dataclass
class Phone:
    """A phone registered through the API, that pulls and reports as the app does."""

    client: httpx.Client
    token: str

    @classmethod
    def register(cls, client: httpx.Client, base_url: str, name: str) -> Phone:
        answer = client.post(f"{MOBILE}/device", json={"name": name})
        answer.raise_for_status()
        token = answer.json()["token"]
        phone_client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        return cls(phone_client, token)

    def pull(self) -> tuple[float, list[dict[str, Any]]]:
        elapsed, answer = timed(self.client, "GET", f"{MOBILE}/message")
        items: list[dict[str, Any]] = answer.json()
        return elapsed, items

    def deliver(self, items: list[dict[str, Any]]) -> None:
        """Report every pulled message Delivered (the phone sent them): its cap frees."""
        if not items:
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        states = {"Processed": now, "Sent": now, "Delivered": now}
        body = [
            {
                "id": item["id"],
                "state": "Delivered",
                "recipients": [
                    {"phoneNumber": n, "state": "Delivered"} for n in item["phoneNumbers"]
                ],
                "states": states,
            }
            for item in items
        ]
        timed(self.client, "PATCH", f"{MOBILE}/message", json=body)

    def close(self) -> None:
        self.client.close()


def pulls(phone: Phone, count: int) -> tuple[list[float], int]:
    """`count` pulls, each followed by a report of what it gave (not timed), so that every
    pull claims anew as a working phone's does; the latencies and the messages pulled."""
    samples: list[float] = []
    pulled = 0
    for _ in range(count):
        elapsed, items = phone.pull()
        samples.append(elapsed)
        pulled += len(items)
        phone.deliver(items)
    return samples, pulled


def posts(clients: dict[str, httpx.Client], count: int, chunk: int = 25) -> dict[str, list[float]]:
    """`count` POST /messages to each server, in turns of `chunk` (so that a drift of the
    machine hits both)."""
    samples: dict[str, list[float]] = {name: [] for name in clients}
    done = 0
    while done < count:
        size = min(chunk, count - done)
        for name, client in clients.items():
            samples[name] += [timed(client, "POST", MESSAGES, json=BODY)[0] for _ in range(size)]
        done += size
    return samples


def sample_ids(ext_ids: list[str], count: int, seed: int = 17) -> list[str]:
    return random.Random(seed).sample(ext_ids, min(count, len(ext_ids)))
