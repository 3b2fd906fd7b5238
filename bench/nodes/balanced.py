"""Phones behind a round-robin balancer against phones on nodes of their own: 3 nodes on one
PostgreSQL database, 4 simulated phones, the same messages through each.

Each side of a round starts 4 fresh phones (new registrations with the account's login, as
tests/test_multinode.py makes them: their own timer never pulls, their event stream and the
nodes' periodic worker wake them). "direct": each phone talks to one node, the phones spread
over the nodes (1, 2, 3, 1). "balancer": every phone talks to one tests/fakes/balancer.py in
front of all three nodes, which hands each new connection to the next node in turn, so a
phone's reports of one message (Processed, Sent, Delivered) reach different nodes at once.
This is where the nodes' report batches deadlocked before each batch locked what its units
name in one order (commit 088cd43); "direct" is the baseline, measured in the same run.
"relayed": each phone talks to a balancer of its own in front of one node (1, 2, 3, 1), so
it pays the balancer's hop but its reports all reach one node: what the balancer side
loses beyond the relayed one is the nodes' own, not the hop's.

The messages (`messages` a side, with ids of the bench's own, unique per side and round) go
50 at a time, spread round-robin over the nodes' own APIs (only the phones go through the
balancer). Measured per side: the seconds to post them all, each POST's round trip, the
seconds from the first POST until the phones' last report of a final state was taken
(`SimulatedPhone.final_reported`: nothing polls the nodes meanwhile), the delivered
messages a second, and the database's deadlocks (`pg_stat_database.deadlocks`).

A session reports its deadlocks to `pg_stat_database` when it next ends a transaction a
second or more after its last report, or after 10 s idle (PostgreSQL 15's
PGSTAT_IDLE_INTERVAL; `pg_stat_force_next_flush()` flushes only the caller's own session).
So after a side the count is read again until it reaches the number of "deadlock detected"
errors in the server's log since the side began, for 12 s at most; both are kept.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from tests.fakes.balancer import Balancer
from tests.fakes.phone import SimulatedPhone

from bench.common import machine_busy_seconds, tree_cpu_seconds
from bench.fleet.fleet import percentile, self_cpu
from bench.fleet.server import Server
from bench.ingest.__main__ import INGEST_PATH, LOGIN, PASSWORD
from bench.nodes.postgres import PgWatch

SIDES = ("direct", "relayed", "balancer")
#: The sides measured against "direct", in the same round.
AGAINST_DIRECT = ("relayed", "balancer")
NODES = 3
PHONES = 4
#: Messages posted at once, as tests/test_multinode.py sends them.
BATCH = 50
MOBILE = "/api/mobile/v1"
NUMBER = "+12025550100"
#: Tries of one POST: a lost answer or a failure is sent again with the same id (a 409
#: then says the first one was taken).
POST_TRIES = 5
#: Longest wait for the deadlock count to catch up with the server's log (see above).
STATS_WAIT_SECONDS = 12.0


@dataclass
class Side:
    """One side of one round; times in seconds unless named otherwise."""

    side: str
    round: int
    messages: int
    posting_s: float = 0.0
    post_p50_ms: float = 0.0
    post_p95_ms: float = 0.0
    delivered: int = 0
    delivered_s: float = 0.0
    delivered_per_s: float = 0.0
    deadlocks: int = 0
    deadlocks_logged: int = 0
    #: PostgreSQL's commits and WAL syncs a message, cluster-wide, from the first POST to
    #: the end of the side (its sessions' counts lag by a second or so: approximate).
    commits_per_message: float = 0.0
    wal_syncs_per_message: float = 0.0
    #: POSTs sent again (no answer, or an answer other than 200 and 409), by cause.
    post_retries: dict[str, int] = field(default_factory=dict)
    sent_total: int = 0
    duplicates: int = 0
    never_sent: int = 0
    phones_that_sent: int = 0
    stored_delivered: int = 0
    #: New connections each balancer gave each of its nodes (not on the direct side).
    balancer_connections: list[int] = field(default_factory=list)
    #: Cores' worth used from the first POST to the last final report.
    node_cores: float = 0.0
    pg_cores: float = 0.0
    bench_cores: float = 0.0
    other_cpu_percent: float = 0.0
    problems: list[str] = field(default_factory=list)


@dataclass
class _Cpu:
    nodes: float
    pg: float
    bench: float
    busy: float
    at: float


def _cpu(pids: list[int], pg: PgWatch) -> _Cpu:
    nodes = sum(tree_cpu_seconds(pid) or 0.0 for pid in pids)
    return _Cpu(nodes, pg.cpu().total, self_cpu(), machine_busy_seconds() or 0.0, time.monotonic())


def _usage(side: Side, before: _Cpu, after: _Cpu) -> None:
    wall = max(after.at - before.at, 1e-9)
    nodes, pg = after.nodes - before.nodes, after.pg - before.pg
    bench = after.bench - before.bench
    other = (after.busy - before.busy) - nodes - pg - bench
    side.node_cores = round(nodes / wall, 2)
    side.pg_cores = round(pg / wall, 2)
    side.bench_cores = round(bench / wall, 2)
    side.other_cpu_percent = round(max(other, 0) * 100 / ((os.cpu_count() or 1) * wall), 1)


async def measure(
    servers: list[Server],
    database_url: str,
    pg: PgWatch,
    order: list[tuple[int, str]],
    messages: int,
) -> list[Side]:
    """The sides in `order` ((round, side) pairs), one after the other, on running nodes."""
    apis = [_api(server) for server in servers]
    try:
        for api in apis:  # each node verifies the login once before anything is timed
            await _delivered_count(api)
        sides = []
        for number, name in order:
            side = await _one_side(name, number, servers, apis, database_url, pg, messages)
            print_side(side)
            sides.append(side)
        return sides
    finally:
        for api in apis:
            await api.close()


async def _one_side(
    name: str,
    number: int,
    servers: list[Server],
    apis: list[aiohttp.ClientSession],
    database_url: str,
    pg: PgWatch,
    messages: int,
) -> Side:
    side = Side(name, number + 1, messages)
    balancers = []
    if name == "balancer":
        balancers = [await Balancer([server.port for server in servers]).start()]
        urls = [balancers[0].url] * PHONES
    elif name == "relayed":
        for i in range(PHONES):
            balancers.append(await Balancer([servers[i % len(servers)].port]).start())
        urls = [balancer.url for balancer in balancers]
    else:
        urls = [servers[i % len(servers)].base_url for i in range(PHONES)]
    phones = [
        SimulatedPhone(
            url + MOBILE, login=(LOGIN, PASSWORD), pull_interval=1e9, name=f"{name}-{number}-{i}"
        )
        for i, url in enumerate(urls)
    ]
    ids = [f"r{number + 1}-{name}-{n}" for n in range(messages)]
    log = pg.cluster.directory / "log"
    try:
        await _start(phones, apis)
        stored_before = await _delivered_count(apis[0])
        deadlocks_before, logged_before = await _deadlocks(database_url), _logged_deadlocks(log)
        cpu_before, counts_before = _cpu([server.pid for server in servers], pg), pg.counts()
        first = time.monotonic()
        posted, latencies = await _post_all(apis, ids, side.post_retries)
        side.posting_s = round(time.monotonic() - first, 3)
        done = await _until_final(phones, posted, within=max(120.0, messages * 0.2))
        _usage(side, cpu_before, _cpu([server.pid for server in servers], pg))
        await asyncio.sleep(0.5)  # a second send of any message would show by now
    finally:
        await asyncio.gather(*(phone.stop() for phone in phones))
        for balancer in balancers:
            side.balancer_connections += list(balancer.connections.values())
            await balancer.stop()
    side.deadlocks_logged = _logged_deadlocks(log) - logged_before
    side.deadlocks = await _caught_up(database_url, deadlocks_before, side.deadlocks_logged)
    counts = pg.counts() - counts_before
    side.commits_per_message = round(counts.commits / messages, 2)
    side.wal_syncs_per_message = round(counts.wal_syncs / messages, 2)
    side.stored_delivered = await _delivered_count(apis[0]) - stored_before
    _outcome(side, phones, ids, posted, latencies, done, first)
    return side


def _outcome(
    side: Side,
    phones: list[SimulatedPhone],
    ids: list[str],
    posted: set[str],
    latencies: list[float],
    done: dict[str, float],
    first: float,
) -> None:
    """The side's figures and problems, from what the phones sent and reported."""
    if latencies:
        side.post_p50_ms = round(percentile(latencies, 50), 2)
        side.post_p95_ms = round(percentile(latencies, 95), 2)
    side.delivered = len(done)
    if done:
        side.delivered_s = round(max(done.values()) - first, 3)
        side.delivered_per_s = round(len(done) / side.delivered_s, 1)
    counts = Counter(message_id for phone in phones for message_id, _ in phone.sent)
    side.sent_total = sum(counts.values())
    side.duplicates = sum(n - 1 for n in counts.values() if n > 1)
    side.never_sent = len(posted - set(counts))
    side.phones_that_sent = sum(1 for phone in phones if phone.sent)
    where = f"balanced, round {side.round}, {side.side}"
    problems = side.problems
    if len(posted) < len(ids):
        problems.append(f"{where}: {len(ids) - len(posted)} message(s) could not be posted")
    if side.duplicates:
        problems.append(f"{where}: {side.duplicates} message(s) sent more than once")
    if side.never_sent:
        problems.append(f"{where}: {side.never_sent} message(s) never sent")
    if set(counts) - set(ids):
        problems.append(f"{where}: phones sent id(s) that were not posted in this side")
    if side.delivered < len(ids):
        problems.append(f"{where}: {side.delivered} of {len(ids)} delivered")
    if side.stored_delivered != len(ids):
        problems.append(f"{where}: the nodes hold {side.stored_delivered} more Delivered, "
                        f"not {len(ids)}")  # fmt: skip


def _api(server: Server) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=server.base_url,
        auth=aiohttp.BasicAuth(LOGIN, PASSWORD),
        timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_read=30),
        connector=aiohttp.TCPConnector(limit=BATCH),
        json_serialize=functools.partial(json.dumps, separators=(",", ":")),
    )


async def _start(phones: list[SimulatedPhone], apis: list[aiohttp.ClientSession]) -> None:
    """Start the phones one by one, then wait until every node sees them all connected."""
    for phone in phones:
        await phone.start()
        await _until(functools.partial(_settled, phone), "a phone started")
    ids = {phone.credentials.id for phone in phones if phone.credentials is not None}
    for api in apis:
        await _until(functools.partial(_connected, api, ids), "every phone connected everywhere")


async def _settled(phone: SimulatedPhone) -> bool:
    """Its event stream is open and no pull is running or due (its start-up pulls done)."""
    return phone.sse_opens > 0 and phone.settled()


async def _until(check: Callable[[], Awaitable[bool]], what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench: {what}: not within {within} s")
        await asyncio.sleep(0.05)


async def _connected(api: aiohttp.ClientSession, device_ids: set[str]) -> bool:
    async with api.get("/api/3rdparty/v1/devices", raise_for_status=True) as answer:
        devices = await answer.json()
    return device_ids <= {d["id"] for d in devices if d["connected"]}


async def _post_all(
    apis: list[aiohttp.ClientSession], ids: list[str], retries: dict[str, int]
) -> tuple[set[str], list[float]]:
    """POST every message, `BATCH` at a time, message n through node n mod 3: the ids
    taken, and each answered POST's round trip in ms."""
    posted: set[str] = set()
    latencies: list[float] = []
    for start in range(0, len(ids), BATCH):
        batch = range(start, min(start + BATCH, len(ids)))
        taken = await asyncio.gather(
            *(_post(apis[n % len(apis)], ids[n], latencies, retries) for n in batch)
        )
        posted.update(ids[n] for n, ok in zip(batch, taken, strict=True) if ok)
    return posted, latencies


async def _post(
    api: aiohttp.ClientSession, message_id: str, latencies: list[float], retries: dict[str, int]
) -> bool:
    """Send one message with its own id, as a careful client does: again when the answer
    was lost or was not 200 or 409 (a 409 says an earlier try was taken)."""
    body = {"id": message_id, "phoneNumbers": [NUMBER], "textMessage": {"text": message_id}}
    for _ in range(POST_TRIES):
        began = time.monotonic()
        try:
            async with api.post(INGEST_PATH, json=body) as answer:
                await answer.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            retries[type(error).__name__] = retries.get(type(error).__name__, 0) + 1
            continue
        latencies.append((time.monotonic() - began) * 1000)
        if answer.status in (200, 409):
            return True
        retries[str(answer.status)] = retries.get(str(answer.status), 0) + 1
    return False


async def _until_final(
    phones: list[SimulatedPhone], posted: set[str], within: float
) -> dict[str, float]:
    """When the nodes took each posted message's final report (time.monotonic()), once all
    have one or `within` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        done = {
            message_id: at
            for phone in phones
            for message_id, at in phone.final_reported.items()
            if message_id in posted
        }
        if len(done) >= len(posted) or time.monotonic() > deadline:
            return done
        await asyncio.sleep(0.02)


async def _delivered_count(api: aiohttp.ClientSession) -> int:
    query = {"state": "Delivered", "limit": "1"}
    async with api.get(INGEST_PATH, params=query, raise_for_status=True) as answer:
        return int(answer.headers["X-Total-Count"])


async def _deadlocks(database_url: str) -> int:
    """The database's deadlocks so far, as its sessions have reported them."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _caught_up(database_url: str, before: int, logged: int) -> int:
    """The deadlocks since `before`, read until they reach the `logged` count (or for
    STATS_WAIT_SECONDS at most: a session idle since reports within 10 s)."""
    deadline = time.monotonic() + STATS_WAIT_SECONDS
    while True:
        count = await _deadlocks(database_url) - before
        if count >= logged or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.2)


def _logged_deadlocks(log: Path) -> int:
    """The "deadlock detected" errors in the cluster's log (0 when it cannot be read)."""
    try:
        return log.read_bytes().count(b"deadlock detected")
    except OSError:
        return 0


def print_side(side: Side) -> None:
    retries = sum(side.post_retries.values())
    print(
        f"round {side.round} {side.side:<8} {side.messages} msgs: posted in "
        f"{side.posting_s:6.2f} s (p50/p95 {side.post_p50_ms:7.1f}/{side.post_p95_ms:7.1f} ms, "
        f"{retries} retries), delivered in {side.delivered_s:6.2f} s "
        f"({side.delivered_per_s:6.1f}/s), deadlocks {side.deadlocks} "
        f"(log {side.deadlocks_logged}), {side.commits_per_message:.2f} commits and "
        f"{side.wal_syncs_per_message:.2f} WAL syncs/msg, cores nodes {side.node_cores:.2f} "
        f"pg {side.pg_cores:.2f} bench {side.bench_cores:.2f}, other {side.other_cpu_percent}%",
        flush=True,
    )


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


FIGURES = (
    "posting_s", "post_p50_ms", "post_p95_ms", "delivered_s", "delivered_per_s", "deadlocks",
    "commits_per_message", "wal_syncs_per_message", "other_cpu_percent",
)  # fmt: skip


def summarise(sides: list[Side]) -> dict[str, Any]:
    """Per side, each figure's median and range over the rounds; and the relayed and
    balancer sides' delivered messages a second over the direct side's of the same round."""
    summary: dict[str, Any] = {}
    for name in SIDES:
        mine = [s for s in sides if s.side == name]
        if not mine:
            continue
        summary[name] = {key: spread([getattr(s, key) for s in mine]) for key in FIGURES}
        summary[name]["deadlocks_total"] = sum(s.deadlocks for s in mine)
    rounds: dict[int, dict[str, Side]] = {}
    for s in sides:
        rounds.setdefault(s.round, {})[s.side] = s
    for name in AGAINST_DIRECT:
        pairs = [r for r in rounds.values() if {"direct", name} <= set(r)]
        if not pairs:
            continue
        summary[f"ratio_{name}_to_direct_delivered_per_s"] = spread(
            [r[name].delivered_per_s / max(r["direct"].delivered_per_s, 1e-9) for r in pairs]
        )
        summary[f"ratio_{name}_to_direct_posting_s"] = spread(
            [r[name].posting_s / max(r["direct"].posting_s, 1e-9) for r in pairs]
        )
    _print_summary(summary, len(rounds), sides[0].messages)
    return summary


def _print_summary(summary: dict[str, Any], rounds: int, messages: int) -> None:
    print(f"\nbalanced: {NODES} nodes, {PHONES} phones, {messages} messages a side, {BATCH} "
          f"at a time; median (min-max) over {rounds} round(s)")  # fmt: skip
    columns = ("posting s", "POST p50 ms", "POST p95 ms", "delivered msg/s", "deadlocks")
    print((f"{'side':<9}" + "".join(f"{c:<24}" for c in columns)).rstrip())
    for name in SIDES:
        if name not in summary:
            continue
        s = summary[name]
        cells = [_range(s["posting_s"], 2), _range(s["post_p50_ms"], 1),
                 _range(s["post_p95_ms"], 1), _range(s["delivered_per_s"], 1),
                 f"{_range(s['deadlocks'], 0)}, {s['deadlocks_total']} in all"]  # fmt: skip
        print((f"{name:<9}" + "".join(f"{c:<24}" for c in cells)).rstrip())
    for name in AGAINST_DIRECT:
        if f"ratio_{name}_to_direct_delivered_per_s" not in summary:
            continue
        ratio = summary[f"ratio_{name}_to_direct_delivered_per_s"]
        posting = summary[f"ratio_{name}_to_direct_posting_s"]
        print(f"{name} / direct, same round: delivered msg/s x{_range(ratio)}, "
              f"posting time x{_range(posting)}")  # fmt: skip


def _range(spread: dict[str, float], digits: int = 3) -> str:
    return f"{spread['median']:.{digits}f} ({spread['min']:.{digits}f}-{spread['max']:.{digits}f})"
