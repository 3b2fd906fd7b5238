"""Ingest spread over running nodes: bench.ingest's wrk load (`post.lua`: its body, its Basic
auth) with wrk's threads taken in turn by the nodes (`spread.lua`), and what it cost: the
nodes' CPU, PostgreSQL's, wrk's and the rest of the machine's."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import machine_busy_seconds, tree_cpu_seconds
from bench.fleet.server import Server
from bench.ingest.__main__ import (
    INGEST_PATH,
    LOGIN,
    LUA_SCRIPT,
    PASSWORD,
    WrkCounts,
    children_cpu_seconds,
    wrk_post,
)
from bench.nodes.postgres import PgCounts, PgCpu, PgWatch

SPREAD_SCRIPT = Path(__file__).with_name("spread.lua")


@dataclass
class Load(WrkCounts):
    """One wrk run against some nodes; CPU figures in ms per accepted message."""

    label: str = ""
    nodes: int = 0
    duration_s: float = 0.0
    accepted_per_s: float = 0.0
    stored: int = 0
    node_cpu_ms: float = 0.0
    pg_cpu_ms: dict[str, float] = field(default_factory=dict)
    wrk_cpu_ms: float = 0.0
    #: Cores' worth each part used during the run (1.0 = one core all the time).
    node_cores: float = 0.0
    pg_cores: float = 0.0
    other_cpu_percent: float = 0.0
    #: PostgreSQL's transactions committed and WAL syncs a second, messages per WAL sync.
    pg_commits_per_s: float = 0.0
    pg_wal_syncs_per_s: float = 0.0
    messages_per_wal_sync: float = 0.0

    @property
    def pg_total_ms(self) -> float:
        return sum(self.pg_cpu_ms.values())


@dataclass
class Loader:
    """Drives `wrk` at the nodes given to `run`; `pg` watches PostgreSQL (None on SQLite)."""

    wrk: str
    threads: int
    connections: int
    pg: PgWatch | None = None

    def warm(self, nodes: list[Server], seconds: int) -> None:
        if seconds:  # wrk refuses a zero duration
            self._wrk(nodes, seconds)
            with httpx.Client(base_url=nodes[0].base_url, auth=(LOGIN, PASSWORD)) as api:
                settled(api)  # its last requests are not counted as the next load's

    def run(self, label: str, nodes: list[Server], seconds: int) -> Load:
        """Load the nodes for `seconds`; checks afterwards that what was accepted is stored."""
        with httpx.Client(base_url=nodes[0].base_url, auth=(LOGIN, PASSWORD), timeout=30) as api:
            stored_before = stored(api)
            pids = [node.pid for node in nodes]
            counts_before = self._pg_counts()
            nodes_before, pg_before = _nodes_cpu(pids), self._pg_cpu()
            busy_before, wrk_before = machine_busy_seconds() or 0.0, children_cpu_seconds()
            raw = self._wrk(nodes, seconds)
            nodes_used, pg_used = _nodes_cpu(pids) - nodes_before, self._pg_cpu() - pg_before
            busy = (machine_busy_seconds() or 0.0) - busy_before
            wrk_used = children_cpu_seconds() - wrk_before
            count = settled(api) - stored_before
            counts = self._pg_counts() - counts_before
        errors: dict[str, int] = raw["errors"]
        non_2xx = errors.pop("status")
        duration = raw["duration_us"] / 1e6
        accepted = max(raw["requests"] - non_2xx, 1)
        other = busy - nodes_used - pg_used.total - wrk_used
        return Load(
            label=label,
            nodes=len(nodes),
            requests=raw["requests"],
            duration_s=round(duration, 3),
            accepted_per_s=round((raw["requests"] - non_2xx) / duration, 1),
            non_2xx=non_2xx,
            socket_errors=errors,
            latency_ms={k: round(v / 1000, 2) for k, v in raw["latency_us"].items()},
            stored=count,
            node_cpu_ms=round(nodes_used * 1000 / accepted, 3),
            pg_cpu_ms={
                "sessions": round(pg_used.sessions * 1000 / accepted, 3),
                "background": round(pg_used.background * 1000 / accepted, 3),
                "ended": round(pg_used.ended * 1000 / accepted, 3),
            }
            if self.pg is not None
            else {},
            wrk_cpu_ms=round(wrk_used * 1000 / accepted, 3),
            node_cores=round(nodes_used / duration, 2),
            pg_cores=round(pg_used.total / duration, 2),
            other_cpu_percent=round(max(other, 0) * 100 / ((os.cpu_count() or 1) * duration), 1),
            pg_commits_per_s=round(counts.commits / duration, 1),
            pg_wal_syncs_per_s=round(counts.wal_syncs / duration, 1),
            messages_per_wal_sync=round(accepted / max(counts.wal_syncs, 1), 2),
        )

    def _wrk(self, nodes: list[Server], seconds: int) -> dict[str, Any]:
        ports = ",".join(str(node.port) for node in nodes)
        env = {"BENCH_POST_LUA": str(LUA_SCRIPT), "BENCH_PORTS": ports}
        url = nodes[0].base_url + INGEST_PATH
        return wrk_post(self.wrk, url, seconds, self.threads, self.connections, SPREAD_SCRIPT, env)

    def _pg_cpu(self) -> PgCpu:
        return self.pg.cpu() if self.pg is not None else PgCpu(0, 0, 0)

    def _pg_counts(self) -> PgCounts:
        return self.pg.counts() if self.pg is not None else PgCounts(0, 0, 0)


def settled(api: httpx.Client) -> int:
    """How many messages the account holds once the requests that were in flight when wrk
    stopped (it does not count them) have committed: the count no longer changes."""
    count = stored(api)
    while True:
        time.sleep(0.3)
        previous, count = count, stored(api)
        if count == previous:
            return count


def stored(api: httpx.Client) -> int:
    """How many messages the account holds (X-Total-Count)."""
    answer = api.get(INGEST_PATH, params={"limit": 1})
    answer.raise_for_status()
    return int(answer.headers["X-Total-Count"])


def _nodes_cpu(pids: list[int]) -> float:
    return sum(tree_cpu_seconds(pid) or 0.0 for pid in pids)
