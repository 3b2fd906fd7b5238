"""`python -m bench.nodes`: several smsgw nodes on one PostgreSQL database (issue 16).

A throwaway PostgreSQL cluster with its durable defaults (fsync and synchronous_commit on),
then up to four parts (`--parts`, each in its own database):

- scale: 1, 2, 3 real `smsgw serve` nodes (SMSGW_WORKERS=1 each, own data directory and
  port, one JWT secret), bench.ingest's wrk load spread over their ports; the accepted
  messages/s of each node count, its ratio to one node measured in the same round, and the
  CPU per message of the nodes and, apart, of PostgreSQL's processes. The node counts are
  visited up and down (1 2 3, 3 2 1, ...), so that a drift of the machine hits all of them.
- wake: a phone's event stream on node A; messages sent one at a time on node B, and on A
  itself as the baseline; the time until the MessageEnqueued event arrives (wake.py).
- engines: one node on SQLite (`synchronous=FULL`) and one on PostgreSQL, loaded in turn
  (S P, P S, ...): PostgreSQL's ingest as a share of SQLite's. `--profile PREFIX` then
  records each node with py-spy during one more load and prints where its time went.
- balanced: 3 nodes, 4 fresh simulated phones a side, `--balanced-messages` sent 50 at a
  time over the nodes' APIs; the phones straight to one node each ("direct", the baseline)
  or each through a balancer of its own in front of one node ("relayed": the hop alone),
  or all through one round-robin TCP balancer in front of the nodes ("balancer"), the
  sides in turn (D R B, B R D, ...): the time to post, POST p50/p95, the time until the
  phones' last Delivered report was taken, delivered messages/s, the database's deadlocks;
  each side's delivered/s over the direct side's in the same round (balanced.py).

Exit status: 0 when the run is valid, 1 when it is not (a non-2xx answer, a socket error,
messages stored that were not accepted or accepted and not stored, a wake never heard,
a message of the balanced part sent twice, never sent or not delivered).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from tests import pgcluster

from bench import profile
from bench.common import RESULTS_DIR, machine, report_run, results_stamp
from bench.fleet.server import ROOT, Server
from bench.nodes import balanced, postgres, wake
from bench.nodes.load import Load, Loader
from bench.nodes.nodes import Nodes

T = TypeVar("T")
PARTS = ("scale", "wake", "engines", "balanced")
#: The parts that load the nodes with wrk.
WRK_PARTS = {"scale", "engines"}
#: Issue 16's target for one node: PostgreSQL's ingest at least this share of SQLite's.
TARGET_ENGINE_RATIO = 0.8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.nodes", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--parts", default="scale,wake", help="comma-separated, of scale, wake, engines, "
        "balanced (default scale,wake; each part is about a minute and a half)",
    )  # fmt: skip
    parser.add_argument("--max-nodes", type=int, default=3, help="largest node count (3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each part (3)")
    parser.add_argument("--duration", type=int, default=8, help="seconds per load (8)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up before each load (2 s)")
    parser.add_argument("--threads", type=int, default=6, help="wrk -t (6: 6, 3, 2 per node)")
    parser.add_argument("--connections", type=int, default=36, help="wrk -c (36)")
    parser.add_argument("--wake-samples", type=int, default=200, help="sends per node (200)")
    parser.add_argument(
        "--balanced-messages", type=int, default=1000,
        help="messages of each side of a balanced round (1000)",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", default="info", help="SMSGW_LOG_LEVEL (info, as `smsgw serve`)"
    )
    parser.add_argument(
        "--engine-workers", type=int, default=1, help="SMSGW_WORKERS of the engines part (1)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="SMSGW_X=VALUE",
        help="one more setting of every node (repeatable), e.g. SMSGW_DB_POOL_SIZE=10",
    )  # fmt: skip
    parser.add_argument(
        "--profile", type=Path, help="engines part: py-spy each node during one more load, "
        "into PREFIX.postgresql.txt and PREFIX.sqlite.txt (collapsed stacks)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not args.parts or set(args.parts) - set(PARTS):
        parser.error(f"--parts: choose among {', '.join(PARTS)}")
    if min(args.max_nodes, args.rounds, args.duration, args.threads, args.wake_samples,
           args.balanced_messages) < 1:  # fmt: skip
        parser.error(
            "max-nodes, rounds, duration, threads, wake-samples and balanced-messages must be "
            "at least 1"
        )
    if any("=" not in s or not s.startswith("SMSGW_") for s in args.set):
        parser.error("--set takes SMSGW_NAME=VALUE")
    return args


def node_settings(args: argparse.Namespace, **more: str) -> dict[str, str]:
    settings = {"SMSGW_LOG_LEVEL": args.log_level}
    settings.update(s.split("=", 1) for s in args.set)
    return settings | more


def visiting_order(items: list[T], rounds: int) -> list[tuple[int, T]]:
    """(round, item) pairs, up then down then up...: 1 2 3, 3 2 1, 1 2 3."""
    order: list[tuple[int, T]] = []
    for number in range(rounds):
        order += [(number, item) for item in (items if number % 2 == 0 else items[::-1])]
    return order


def run_scale(args: argparse.Namespace, loader: Loader, url: str, root: Path) -> list[Load]:
    nodes = Nodes(root, url, node_settings(args))
    loads: list[Load] = []
    try:
        counts = list(range(1, args.max_nodes + 1))
        for number, count in visiting_order(counts, args.rounds):
            running = nodes.resize(count)
            loader.warm(running, args.warmup)
            load = loader.run(f"round {number + 1}", running, args.duration)
            loads.append(load)
            print_load(load)
    finally:
        nodes.stop()
    return loads


def run_wake(args: argparse.Namespace, url: str, root: Path) -> dict[str, wake.Side]:
    # The periodic worker would wake the phone too, about the messages it never pulls.
    quiet = {"SMSGW_WORKER_INTERVAL_SECONDS": "60", "SMSGW_WORKER_STALL_SECONDS": "120"}
    nodes = Nodes(root, url, node_settings(args, **quiet))
    try:
        a, b = nodes.resize(2)
        return asyncio.run(wake.measure(a.base_url, b.base_url, args.wake_samples))
    finally:
        nodes.stop()


def run_balanced(
    args: argparse.Namespace, pg: postgres.PgWatch, url: str, root: Path
) -> list[balanced.Side]:
    # The periodic worker as tests/test_multinode.py runs it beside its balancer.
    nodes = Nodes(root, url, node_settings(args, SMSGW_WORKER_INTERVAL_SECONDS="0.5"))
    try:
        servers = nodes.resize(balanced.NODES)
        order = visiting_order(list(balanced.SIDES), args.rounds)
        return asyncio.run(balanced.measure(servers, url, pg, order, args.balanced_messages))
    finally:
        nodes.stop()


def run_engines(
    args: argparse.Namespace, loader: Loader, url: str, root: Path
) -> tuple[list[Load], dict[str, str]]:
    settings = node_settings(args, SMSGW_WORKERS=str(args.engine_workers))
    engines = {
        "sqlite": Nodes(root / "sqlite", None, settings),
        "postgresql": Nodes(root / "postgresql", url, settings),
    }
    loads: list[Load] = []
    profiles: dict[str, str] = {}
    try:
        servers = {name: nodes.resize(1) for name, nodes in engines.items()}
        for number, name in visiting_order(list(engines), args.rounds):
            load = _engine_load(loader, name, servers[name], args, f"round {number + 1}")
            loads.append(load)
            print_load(load)
        if args.profile is not None:
            for name, running in servers.items():
                out = args.profile.with_name(f"{args.profile.name}.{name}.txt")
                recording = profile.Recording(running[0].pid, out)
                load = _engine_load(loader, name, running, args, "profiled")
                recording.stop()
                profiles[name] = profile.top(out)
                print(f"\n{name} under py-spy ({load.accepted_per_s:.0f} msg/s): {out}")
                print(profiles[name])
    finally:
        for nodes in engines.values():
            nodes.stop()
    return loads, profiles


def _engine_load(
    loader: Loader, name: str, servers: list[Server], args: argparse.Namespace, label: str
) -> Load:
    engine_loader = Loader(
        loader.wrk,
        loader.threads,
        loader.connections,
        loader.pg if name == "postgresql" else None,
    )
    engine_loader.warm(servers, args.warmup)
    load = engine_loader.run(f"{label} {name}", servers, args.duration)
    return load


def print_load(load: Load) -> None:
    pg = "   n/a ms/msg"
    if load.pg_cpu_ms:
        pg = f"{load.pg_total_ms:6.3f} ms/msg ({load.pg_cores:.2f} cores, "
        pg += f"{load.messages_per_wal_sync:5.1f} msg/WAL sync)"
    print(
        f"{load.label:<24} {load.nodes} node(s) {load.accepted_per_s:>8.1f} msg/s  "
        f"p50/p99 {load.latency_ms['p50']:6.1f}/{load.latency_ms['p99']:6.1f} ms  "
        f"nodes {load.node_cpu_ms:6.3f} ms/msg ({load.node_cores:.2f} cores)  "
        f"pg {pg}  wrk {load.wrk_cpu_ms:5.3f}  other {load.other_cpu_percent:4.1f}%",
        flush=True,
    )


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def summarise_scale(loads: list[Load], rounds: int, counts: int) -> dict[str, Any]:
    """Per node count: rates, ratio to one node in the same round, CPU per message."""
    by_round: dict[str, dict[int, Load]] = {}
    for load in loads:
        by_round.setdefault(load.label, {})[load.nodes] = load
    summary: dict[str, Any] = {}
    for count in range(1, counts + 1):
        mine = [r[count] for r in by_round.values() if count in r]
        ratios = [r[count].accepted_per_s / r[1].accepted_per_s for r in by_round.values()]
        summary[str(count)] = {
            "accepted_per_s": _spread([m.accepted_per_s for m in mine]),
            "ratio_to_one_node": _spread(ratios),
            "node_cpu_ms": _spread([m.node_cpu_ms for m in mine]),
            "pg_cpu_ms": _spread([m.pg_total_ms for m in mine]),
            "pg_share_of_cpu": _spread(
                [m.pg_total_ms / (m.pg_total_ms + m.node_cpu_ms) for m in mine]
            ),
            "p99_ms": _spread([m.latency_ms["p99"] for m in mine]),
            "wal_syncs_per_s": _spread([m.pg_wal_syncs_per_s for m in mine]),
            "messages_per_wal_sync": _spread([m.messages_per_wal_sync for m in mine]),
        }
    print("\nnodes  accepted msg/s (median, min-max)  x one node   node CPU ms/msg   "
          "PostgreSQL CPU ms/msg   PG share")  # fmt: skip
    for key, s in summary.items():
        print(
            f"{key:>5}  {_range(s['accepted_per_s'], 0):>32}  {_range(s['ratio_to_one_node'])}"
            f"  {_range(s['node_cpu_ms'])}   {_range(s['pg_cpu_ms'])}   "
            f"{_range(s['pg_share_of_cpu'])}"
        )
    one = summary["1"]
    print(
        f"at one node's CPU per message, a core of its own takes a node to about "
        f"{1000 / one['node_cpu_ms']['median']:.0f} msg/s; PostgreSQL spends "
        f"{one['pg_cpu_ms']['median']:.3f} ms of CPU per message, about "
        f"{1000 / one['pg_cpu_ms']['median']:.0f} msg/s per core of its own"
    )
    return summary


def summarise_wake(sides: dict[str, wake.Side]) -> dict[str, Any]:
    summary: dict[str, Any] = {name: side.summary() for name, side in sides.items()}
    other, same = summary["other node"], summary["same node"]
    for key in ("after_answer_p50_ms", "after_answer_p99_ms", "after_request_p50_ms",
                "after_request_p99_ms"):  # fmt: skip
        if other.get(key) and same.get(key):
            summary[f"ratio_{key}"] = round(other[key] / same[key], 2)
            summary[f"added_{key}"] = round(other[key] - same[key], 3)
    print("\nwake: send -> MessageEnqueued on the phone's stream (ms)")
    print("send on      samples missed  after answer p50/p99/max   after request p50/p99/max")
    for name in ("same node", "other node"):
        s = summary[name]
        print(
            f"{name:<12} {s['samples']:>7} {s['missed']:>6}  "
            f"{s.get('after_answer_p50_ms', 0):7.2f} {s.get('after_answer_p99_ms', 0):7.2f} "
            f"{s.get('after_answer_max_ms', 0):7.2f}   {s.get('after_request_p50_ms', 0):7.2f} "
            f"{s.get('after_request_p99_ms', 0):7.2f} {s.get('after_request_max_ms', 0):7.2f}"
        )
    for since in ("answer", "request"):
        ratio = [summary.get(f"ratio_after_{since}_{p}_ms") for p in ("p50", "p99")]
        added = [summary.get(f"added_after_{since}_{p}_ms") for p in ("p50", "p99")]
        print(f"other node against same node, from the {since}: p50 x{ratio[0]} "
              f"(+{added[0]} ms), p99 x{ratio[1]} (+{added[1]} ms)")  # fmt: skip
    return summary


def summarise_engines(loads: list[Load]) -> dict[str, Any]:
    """PostgreSQL's rate over SQLite's, each pair of neighbouring loads (one round)."""
    by_round: dict[str, dict[str, Load]] = {}
    for load in loads:
        number, engine = load.label.rsplit(" ", 1)
        by_round.setdefault(number, {})[engine] = load
    ratios = [
        r["postgresql"].accepted_per_s / r["sqlite"].accepted_per_s for r in by_round.values()
    ]
    summary: dict[str, Any] = {
        "ratio_postgresql_to_sqlite": _spread(ratios),
        "target": TARGET_ENGINE_RATIO,
        "met": statistics.median(ratios) >= TARGET_ENGINE_RATIO,
    }
    for engine in ("sqlite", "postgresql"):
        mine = [r[engine] for r in by_round.values()]
        summary[engine] = {
            "accepted_per_s": _spread([m.accepted_per_s for m in mine]),
            "node_cpu_ms": _spread([m.node_cpu_ms for m in mine]),
            "pg_cpu_ms": _spread([m.pg_total_ms for m in mine]),
            "p99_ms": _spread([m.latency_ms["p99"] for m in mine]),
            "messages_per_wal_sync": _spread([m.messages_per_wal_sync for m in mine]),
        }
    print(
        f"\nPostgreSQL / SQLite ingest on one node: {_range(summary['ratio_postgresql_to_sqlite'])}"
        f" (target >= {TARGET_ENGINE_RATIO}: {'met' if summary['met'] else 'MISSED'})"
    )
    return summary


def _range(spread: dict[str, float], digits: int = 3) -> str:
    return f"{spread['median']:.{digits}f} ({spread['min']:.{digits}f}-{spread['max']:.{digits}f})"


def check(loads: list[Load], connections: int) -> list[str]:
    problems = []
    for load in loads:
        where = f"{load.label}, {load.nodes} node(s)"
        if not load.clean:
            problems.append(f"{where}: {load.non_2xx} non-2xx, socket errors {load.socket_errors}")
        # Requests in flight when wrk stops are not counted by it, and may still commit.
        if not load.accepted <= load.stored <= load.accepted + connections:
            problems.append(f"{where}: {load.accepted} accepted, {load.stored} stored")
    return problems


def postgres_version(cluster: pgcluster.Cluster) -> str:
    done = subprocess.run(
        [str(cluster.bin / "postgres"), "--version"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None and WRK_PARTS & set(args.parts):
        sys.exit("bench: wrk is not installed (`make bench` installs it: apt-get install wrk)")
    result: dict[str, Any] = {"benchmark": "nodes"}
    problems: list[str] = []
    loads: list[Load] = []
    balanced_sides: list[balanced.Side] = []
    cluster = postgres.start()
    try:
        pg = postgres.PgWatch(cluster)
        loader = Loader(wrk or "wrk", args.threads, args.connections, pg)
        info = machine() | {"postgresql": postgres_version(cluster)}
        wrk_note = ""
        if WRK_PARTS & set(args.parts):
            wrk_note = (f", wrk -t{args.threads} -c{args.connections}, {args.warmup}s warm-up + "
                    f"{args.duration}s per load")  # fmt: skip
        print(f"bench.nodes: {info['postgresql']} (fsync on), parts {', '.join(args.parts)}"
              f"{wrk_note}", flush=True)  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="smsgw-bench-nodes-") as tmp:
            root = Path(tmp)
            if "scale" in args.parts:
                scale = run_scale(args, loader, cluster.create_database(), root / "scale")
                loads += scale
                result["scale"] = {
                    "loads": [asdict(load) for load in scale],
                    "summary": summarise_scale(scale, args.rounds, args.max_nodes),
                }
            if "wake" in args.parts:
                sides = run_wake(args, cluster.create_database(), root / "wake")
                summary = summarise_wake(sides)
                result["wake"] = {
                    "summary": summary,
                    "samples_ms": {name: asdict(side) for name, side in sides.items()},
                }
                problems += [
                    f"wake, {name}: {side.missed} sends never heard on the stream"
                    for name, side in sides.items()
                    if side.missed
                ]
            if "engines" in args.parts:
                engines, profiles = run_engines(
                    args, loader, cluster.create_database(), root / "engines"
                )
                loads += engines
                result["engines"] = {
                    "loads": [asdict(load) for load in engines],
                    "summary": summarise_engines([e for e in engines if "profiled" not in e.label]),
                    "profiles": profiles,
                }
            if "balanced" in args.parts:
                balanced_sides = run_balanced(
                    args, pg, cluster.create_database(), root / "balanced"
                )
                result["balanced"] = {
                    "sides": [asdict(side) for side in balanced_sides],
                    "summary": balanced.summarise(balanced_sides),
                }
                problems += [problem for side in balanced_sides for problem in side.problems]
    finally:
        cluster.stop()
    problems += check(loads, args.connections)
    others = [load.other_cpu_percent for load in loads]
    busy = report_run(others + [side.other_cpu_percent for side in balanced_sides], problems)
    stamp = results_stamp()
    result |= {
        "when": stamp,
        "command": " ".join([".venv/bin/python -m bench.nodes", *(argv or sys.argv[1:])]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": info,
        "machine_busy": busy,
        "valid": not problems,
        "problems": problems,
    }
    out = RESULTS_DIR / f"nodes-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
