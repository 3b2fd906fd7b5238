"""Prometheus metrics: HTTP traffic by route template, and the gateway's state at scrape.

Counters live for the process (module level) and are registered, with a collector of the
app's current state, into a fresh registry per scrape. Other parts of smsgw report through
the functions here:

- `webhook_delivery(event, ok)`: once per webhook delivery attempt (webhooks worker).
- `link_submitted(link, answer)`, `link_receipt(link, delivered)`: once per submit_sm sent
  and per final receipt received (links/runner.py).

The webhook outbox's depth is read from the database at scrape, like the message counts and
each carrier link's state and queue depth (links/activity.py).

Several server processes (prometheus_client's multiprocess mode): when PROMETHEUS_MULTIPROC_DIR
is set, every process writes its counters to its own files in that directory and a scrape,
answered by any one process, sums the files of all. prometheus_client decides once, when it
is imported, whether values go to files; so the variable must be in a server process's
environment before it starts (`check_multiprocess` refuses to build an app otherwise).
The supervisor (`smsgw serve`) creates the directory empty, calls `process_exited(pid)` for
each process it has stopped and removes the directory at exit.
"""

from __future__ import annotations

import functools
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smsgw.db.base import table_of
from smsgw.db.engine import Database
from smsgw.devices.models import Device
from smsgw.domain.states import ProcessingState
from smsgw.events.hub import EventHub
from smsgw.links import activity
from smsgw.messages import repository as stored
from smsgw.messages.models import Message as MessageRow
from smsgw.webhooks import repository as webhooks

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "<unmatched>"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

HTTP_REQUESTS = Counter(
    "smsgw_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
    registry=None,
)
HTTP_LATENCY = Histogram(
    "smsgw_http_request_duration_seconds",
    "Time from request to the end of the response, by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
WEBHOOK_DELIVERIES = Counter(
    "smsgw_webhook_deliveries",
    "Webhook delivery attempts, by event and outcome (delivered or failed).",
    ["event", "outcome"],
    registry=None,
)
CODE_SIGN_INS = Counter(
    "smsgw_code_sign_ins",
    "Phone sign-ins by one-time code, by outcome (accepted, wrong, throttled).",
    ["outcome"],
    registry=None,
)
LINK_SUBMITS = Counter(
    "smsgw_link_submitted",
    "submit_sm PDUs a carrier link sent, by link (its id) and the SMSC's answer: accepted, "
    "busy (throttled or queue full: sent again later), refused, none (the session ended).",
    ["link", "answer"],
    registry=None,
)
LINK_RECEIPTS = Counter(
    "smsgw_link_receipts",
    "Final delivery receipts a carrier link received, by link and outcome (delivered or "
    "undelivered).",
    ["link", "outcome"],
    registry=None,
)
SHARED = (
    HTTP_REQUESTS, HTTP_LATENCY, WEBHOOK_DELIVERIES, CODE_SIGN_INS, LINK_SUBMITS, LINK_RECEIPTS,
)  # fmt: skip


def webhook_delivery(event: str, ok: bool) -> None:
    """Count one webhook delivery attempt of `event` (e.g. `sms:sent`) and its outcome."""
    WEBHOOK_DELIVERIES.labels(event, "delivered" if ok else "failed").inc()


def code_sign_in(outcome: str) -> None:
    """Count one attempt to sign a phone in by code: `accepted`, `wrong` or `throttled`."""
    CODE_SIGN_INS.labels(outcome).inc()


def link_submitted(link: str, answer: str) -> None:
    """Count one submit_sm that link `link` sent, by the SMSC's `answer` (accepted, busy,
    refused or none)."""
    _link_child(LINK_SUBMITS, link, answer).inc()


def link_receipt(link: str, delivered: bool) -> None:
    """Count one final delivery receipt link `link` received."""
    _link_child(LINK_RECEIPTS, link, "delivered" if delivered else "undelivered").inc()


@functools.lru_cache(maxsize=4096)
def _link_child(metric: Counter, link: str, label: str) -> Counter:
    """`metric.labels(link, label)`, looked up once (counted for every part a link sends
    and every receipt it gets; children are never removed)."""
    return metric.labels(link, label)


def multiprocess_dir() -> str | None:
    """The directory the server processes' metric files share, or None with one process."""
    return os.environ.get(MULTIPROC_DIR) or None


def check_multiprocess() -> None:
    """Refuse to serve, with a clear message, where a scrape would miss this process's counts:
    PROMETHEUS_MULTIPROC_DIR names no directory, or it was set after prometheus_client was
    imported (its value class is chosen then, once: counts would stay in memory)."""
    shared = multiprocess_dir()
    if shared is None:
        return
    if not os.path.isdir(shared):
        raise RuntimeError(f"{MULTIPROC_DIR}={shared} is not a directory")
    if not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError(
            f"{MULTIPROC_DIR} was set after prometheus_client was imported: start each server "
            "process as a new interpreter with the variable already in its environment"
        )


def process_exited(pid: int, directory: str | None = None) -> None:
    """Bookkeeping when server process `pid` has ended (the supervisor calls it): its `live*`
    gauges leave the sums. Its counters stay in them, so totals never go backwards."""
    shared = directory or multiprocess_dir()
    if shared is not None:
        mark_process_dead(pid, shared)  # type: ignore[no-untyped-call]


def authorized(token: str | None, header: str) -> bool:
    """Whether `Authorization: header` opens /metrics (always, when no token is set)."""
    if token is None:
        return True
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(
        given.strip().encode(), token.encode()
    )


@dataclass(eq=False)  # hashable: a registry keys its collectors
class Snapshot(Collector):
    """The gateway's state at one scrape, exposed as gauges."""

    messages: dict[str, int] = field(default_factory=dict)
    #: Those of virtual phones, apart: they never count as real messages (virtualphones/).
    virtual: dict[str, int] = field(default_factory=dict)
    claimed: int = 0
    phones: int = 0
    streams: int = 0
    outbox: int = 0
    links: list[activity.Gauge] = field(default_factory=list)

    def collect(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily(
            "smsgw_messages",
            "Messages stored, by state (but those of virtual phones).",
            labels=["state"],
        )
        virtual = GaugeMetricFamily(
            "smsgw_virtual_messages",
            "Messages of virtual phones (never real SMS), by state.",
            labels=["state"],
        )
        for state in ProcessingState:
            by_state.add_metric([state.value], self.messages.get(state.value, 0))
            virtual.add_metric([state.value], self.virtual.get(state.value, 0))
        yield by_state
        yield virtual
        yield GaugeMetricFamily(
            "smsgw_messages_claimed",
            "Messages a phone (not a virtual one) has taken and not yet reported Sent, "
            "Delivered or Failed.",
            value=self.claimed,
        )
        yield GaugeMetricFamily(
            "smsgw_phones_connected", "Phones with an open event stream.", value=self.phones
        )
        yield GaugeMetricFamily(
            "smsgw_webhook_outbox_depth",
            "Webhook deliveries waiting in the outbox (to be sent or retried).",
            value=self.outbox,
        )
        yield GaugeMetricFamily(
            "smsgw_event_streams", "Open event streams (a phone may hold several).",
            value=self.streams,
        )  # fmt: skip
        yield from self._links()

    def _links(self) -> Iterator[Metric]:
        families = (
            ("up", "1 when the carrier link's session is bound, else 0 (by link id).",
             lambda g: int(g.up)),
            ("queue_depth", "The owner's queued messages the carrier link could take now "
             f"(counted up to {activity.COUNT_CAP}).", lambda g: g.waiting),
            ("parts_planned", "SMS parts a carrier link has taken and not yet submitted.",
             lambda g: g.planned),
            ("parts_in_flight", "SMS parts a carrier link submitted whose answer is not "
             "recorded yet.", lambda g: g.in_flight),
        )  # fmt: skip
        for name, text, value in families:
            family = GaugeMetricFamily(f"smsgw_link_{name}", text, labels=["link"])
            for gauge in self.links:
                family.add_metric([gauge.device_id], value(gauge))
            yield family


async def snapshot(db: Database, hub: EventHub) -> Snapshot:
    messages, devices = table_of(MessageRow), table_of(Device)
    held = (ProcessingState.PENDING.value, ProcessingState.PROCESSED.value)
    virtual_phones = select(devices.c.id).where(devices.c.virtual.is_(True))
    async with db.read() as conn:
        counts = await stored.count_by_state(conn, virtual=False)
        virtual = await stored.count_by_state(conn, virtual=True)
        claimed = await conn.scalar(
            select(func.count()).where(
                messages.c.state.in_(held),
                messages.c.claimed_at.is_not(None),
                messages.c.device_id.not_in(virtual_phones),
            )
        )
        outbox = await webhooks.pending_count(conn)
    return Snapshot(
        counts,
        virtual,
        int(claimed or 0),
        len(hub.connected()),
        hub.stream_count(),
        outbox,
        await activity.gauges(db),
    )


async def exposition(db: Database, hub: EventHub) -> bytes:
    """The Prometheus text exposition of every smsgw metric, now. With several server
    processes the counters and histograms are summed over all of them; the state gauges are
    read once (the database's are global, and so are the hub's: it knows every process's
    streams)."""
    registry = CollectorRegistry(auto_describe=False)
    shared = multiprocess_dir()
    if shared is None:
        for metric in SHARED:
            registry.register(metric)
    else:
        # The sum of every process's files, this one's included: registering the metric
        # objects as well would count this process twice.
        MultiProcessCollector(registry, path=shared)  # type: ignore[no-untyped-call]
    registry.register(await snapshot(db, hub))
    return generate_latest(registry)


def route_template(scope: Scope) -> str:
    """The matched route's path template with the prefix it is served under, e.g.
    `/api/3rdparty/v1/messages/{id}`; UNMATCHED when no route matched.

    FastAPI may hand over the route of an included router (its template without the
    prefix); the prefix is then the raw path minus as many segments as the template has
    (path parameters here never span segments).
    """
    template = getattr(scope.get("route"), "path", None)
    if not isinstance(template, str) or not template:
        return UNMATCHED
    if ":path}" in template:
        return template
    segments = scope["path"].split("/")
    prefix = "/".join(segments[: max(len(segments) - template.count("/"), 0)])
    return template if template.startswith(prefix + "/") else prefix + template


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (never the raw path, so
    ids in paths do not multiply the series). Pure ASGI: about a microsecond a request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def _series(self, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
        key = (method, route, status)
        found = self._children.get(key)
        if found is None:
            found = (
                HTTP_REQUESTS.labels(method, route, str(status)),
                HTTP_LATENCY.labels(method, route),
            )
            self._children[key] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            requests, latency = self._series(scope["method"], route_template(scope), status)
            requests.inc()
            latency.observe(time.perf_counter() - start)
