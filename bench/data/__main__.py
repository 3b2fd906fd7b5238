"""`python -m bench.data`: the API's reads, a phone's pull and a send on a big database.

For each engine (`--engines`, SQLite and PostgreSQL by default): a database made by
`smsgw users create` (which migrates it) and filled by bench/data/build.py with `--messages`
messages of one account (10% Pending, the rest done) and 99 small accounts; beside it an
empty database made the same way. A real server process on 127.0.0.1 on each
(bench/fleet/server.py: `smsgw serve`, one process), then one client, one request at a time:

- `GET /messages?limit=20` (the first page);
- pages reached by a cursor (`after`, from the Link header), at ten depths over the list,
  with `limit=20` and `limit=100`;
- `GET /messages/{id}` of messages chosen at random over the table;
- `GET /messages?state=Pending&limit=20`;
- `GET /messages?skip=<half>&limit=100` (the old way to page far, for reference);
- a phone's pull `GET /mobile/v1/message` (a phone registered through the API; each pull
  is followed by a report of what it took, not timed, so each pull claims as a working
  phone's does: the Pending pool shrinks by about 10 messages a pull);
- `POST /messages`, in turns on the big and on the empty database.

It prints a table per engine with each target met or missed, and writes everything to
bench/results/data-<time>.json. Exit status: 0 when the run is valid, 1 when it is not (a
request failed, a build came out wrong), 2 with --strict when it is valid but misses a target.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import profile
from bench.common import RESULTS_DIR, machine, machine_busy_seconds, results_stamp, tree_cpu_seconds
from bench.data import build, measure
from bench.fleet.server import PASSWORD, ROOT, Server
from bench.nodes import postgres

LOGIN = "bench"
ENGINES = ("sqlite", "postgresql")
#: Issue 17's targets: p99 in ms of each kind of request, and POST's p99 on the big database
#: at most this many times its p99 on an empty one.
TARGET_P99_MS = {
    "first_page": 20.0,
    "cursor_page_20": 20.0,
    "cursor_page_100": 20.0,
    "get_by_id": 10.0,
    "state_pending": 20.0,
    "pull": 20.0,
}
TARGET_POST_RATIO = 1.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.data", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument(
        "--messages", type=int, default=1_000_000, help="the big account's (1,000,000)"
    )
    parser.add_argument("--small-accounts", type=int, default=99, help="other accounts (99)")
    parser.add_argument(
        "--small-messages", type=int, default=100, help="messages of each other account (100)"
    )
    parser.add_argument("--requests", type=int, default=200, help="of each kind (200)")
    parser.add_argument(
        "--reference-requests", type=int, default=50, help="of the deep skip page (50)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="SMSGW_X=VALUE",
        help="one more setting of both servers (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--sql", action="append", default=[], metavar="STATEMENT",
        help="a statement run on the big database after the build (repeatable): to try an "
        "index, say, before it is a migration; `sqlite:` or `postgresql:` before it: on that "
        "engine only",
    )  # fmt: skip
    parser.add_argument(
        "--profile", type=Path, metavar="PREFIX",
        help="after measuring, py-spy the big server during each kind of request again, "
        "into PREFIX.<engine>.<kind>.txt (collapsed stacks), and print where time went",
    )  # fmt: skip
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    args = parser.parse_args(argv)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not args.engines or set(args.engines) - set(ENGINES):
        parser.error(f"--engines: choose among {', '.join(ENGINES)}")
    if min(args.messages, args.requests, args.reference_requests) < 10:
        parser.error("messages, requests and reference-requests must be at least 10")
    if any("=" not in s or not s.startswith("SMSGW_") for s in args.set):
        parser.error("--set takes SMSGW_NAME=VALUE")
    return args


@dataclass
class EngineRun:
    """One engine's build, timings and checks."""

    engine: str
    built: build.Built | None = None
    database_bytes: int = 0
    timings: list[measure.Timing] = field(default_factory=list)
    pulled: int = 0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    other_cpu_percent: float | None = None
    problems: list[str] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)

    def timing(self, kind: str) -> measure.Timing | None:
        return next((t for t in self.timings if t.kind == kind), None)


def cli_env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
    env.update(
        SMSGW_DATA_DIR=str(data_dir),
        SMSGW_BOOTSTRAP_ACCOUNT="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    if database_url is not None:
        env["SMSGW_DATABASE_URL"] = database_url
    return env


def create_account(data_dir: Path, database_url: str | None) -> None:
    """`smsgw users create`, which migrates the database first (as `smsgw db migrate`)."""
    command = [sys.executable, "-m", "smsgw", "users", "create", LOGIN, "--password", PASSWORD]
    env = cli_env(data_dir, database_url)
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench: could not create the account:\n{done.stdout}{done.stderr}")


def run_sql(database: Path | str, statements: list[str]) -> None:
    """`--sql`: statements on the big database after the build (one transaction)."""
    if not statements:
        return
    if isinstance(database, Path):
        import sqlite3

        with contextlib.closing(sqlite3.connect(database)) as conn, conn:
            for statement in statements:
                conn.execute(statement)
    else:
        import psycopg

        with psycopg.connect(database, autocommit=True) as pg:
            for statement in statements:
                pg.execute(statement)
            pg.execute("ANALYZE")


def statements_for(engine: str, statements: list[str]) -> list[str]:
    """The `--sql` statements for `engine`: those without an engine prefix, and its own."""
    chosen = []
    for statement in statements:
        prefix, _, rest = statement.partition(":")
        if prefix.strip() in ENGINES:
            if prefix.strip() == engine:
                chosen.append(rest.strip())
        else:
            chosen.append(statement)
    return chosen


def settings(args: argparse.Namespace, database_url: str | None) -> dict[str, str]:
    values = {"SMSGW_WORKERS": "1"}
    values.update(s.split("=", 1) for s in args.set)
    if database_url is not None:
        values["SMSGW_DATABASE_URL"] = database_url
    return values


def prepare(
    run: EngineRun, args: argparse.Namespace, tmp: Path, cluster: Any
) -> tuple[Server, Server, list[str]]:
    """Build both databases, start a server on each; the big one's, the empty one's, and
    message ids to read."""
    urls = {name: cluster.create_database() if cluster else None for name in ("big", "empty")}
    for name, url in urls.items():
        create_account(tmp / name, url)
    plan = build.Plan(args.messages, args.small_accounts, args.small_messages)
    print(f"{run.engine}: building {plan.total:,} messages ...", flush=True)
    big_url = urls["big"]
    database: Path | str = big_url if big_url is not None else tmp / "big" / "smsgw.db"
    if isinstance(database, Path):
        run.built = build.build_sqlite(database, plan, LOGIN)
        run.database_bytes = build.sqlite_bytes(database)
    else:
        run.built = build.build_postgres(database, plan, LOGIN)
        run.database_bytes = build.postgres_bytes(database)
    run_sql(database, statements_for(run.engine, args.sql))
    print(
        f"{run.engine}: built in {run.built.seconds:.0f} s, "
        f"{run.database_bytes / 1e6:.0f} MB; the big account's: {run.built.by_state}",
        flush=True,
    )
    ids = build.sample_ext_ids(
        database, run.built.big_user_id, run.built.key_base, plan, args.requests * 2
    )
    servers = [
        Server(tmp / name, tmp / f"{name}.log", [], settings(args, url))
        for name, url in urls.items()
    ]
    return servers[0], servers[1], ids


def check_build(run: EngineRun, args: argparse.Namespace) -> None:
    built = run.built
    assert built is not None
    big = sum(built.by_state.values())
    if big != args.messages or built.by_state.get("Pending", 0) != args.messages // 10:
        run.problems.append(f"the big account has {built.by_state}, not as planned")
    if built.recipients != built.messages:
        run.problems.append(f"{built.recipients} recipients for {built.messages} messages")


def measure_all(
    run: EngineRun, args: argparse.Namespace, big: Server, empty: Server, ids: list[str]
) -> None:
    auth = (LOGIN, PASSWORD)
    n = args.requests
    with (
        httpx.Client(base_url=big.base_url, auth=auth, timeout=60) as client,
        httpx.Client(base_url=empty.base_url, auth=auth, timeout=60) as empty_client,
    ):
        phone = measure.Phone.register(client, big.base_url, "bench-puller")
        warm(client, empty_client, ids[n:])
        m = measure.MESSAGES
        deep = f"{m}?skip={args.messages // 2}&limit=100"
        kinds: dict[str, tuple[str, Callable[[], list[float]]]] = {
            "first_page": (f"GET {m}?limit=20", lambda: measure.repeat(client, f"{m}?limit=20", n)),
            "cursor_page_20": (
                f"GET {m}?limit=20&after=<Link>",
                lambda: measure.cursor_pages(client, args.messages, n, 20),
            ),
            "cursor_page_100": (
                f"GET {m}?limit=100&after=<Link>",
                lambda: measure.cursor_pages(client, args.messages, n, 100),
            ),
            "get_by_id": (f"GET {m}/{{id}}", lambda: measure.by_id(client, ids[:n])),
            "state_pending": (
                f"GET {m}?state=Pending&limit=20",
                lambda: measure.repeat(client, f"{m}?state=Pending&limit=20", n),
            ),
            "skip_deep": (
                f"GET {deep}",
                lambda: measure.repeat(client, deep, args.reference_requests),
            ),
        }
        for kind, (request, work) in kinds.items():
            run.timings.append(measure.Timing.of(kind, request, work()))
            print_timing(run.timings[-1])
        samples, run.pulled = measure.pulls(phone, n)
        run.timings.append(measure.Timing.of("pull", f"GET {measure.MOBILE}/message", samples))
        print_timing(run.timings[-1])
        posted = measure.posts({"post": client, "post_empty": empty_client}, n)
        for kind, values in posted.items():
            where = "big" if kind == "post" else "empty"
            run.timings.append(measure.Timing.of(kind, f"POST {m} ({where})", values))
            print_timing(run.timings[-1])
        if args.profile is not None:
            run.profiles = profile_kinds(run, args, big, client, phone, ids[:n])
        phone.close()


def warm(client: httpx.Client, empty_client: httpx.Client, ids: list[str]) -> None:
    """A few requests of each kind first: caches, connections, the credential cache."""
    m = measure.MESSAGES
    for _ in range(5):
        measure.repeat(client, f"{m}?limit=20", 1)
        measure.repeat(client, f"{m}?state=Pending&limit=20", 1)
    measure.by_id(client, ids[:10])
    measure.posts({"big": client, "empty": empty_client}, 5)


def profile_kinds(
    run: EngineRun,
    args: argparse.Namespace,
    big: Server,
    client: httpx.Client,
    phone: measure.Phone,
    ids: list[str],
) -> dict[str, str]:
    """py-spy on the big server during each kind of request again (`--profile`)."""
    m = measure.MESSAGES
    n = args.requests
    kinds: dict[str, Callable[[], list[float]]] = {
        "first_page": lambda: measure.repeat(client, f"{m}?limit=20", n),
        "cursor_page_100": lambda: measure.cursor_pages(client, args.messages, n, 100),
        "get_by_id": lambda: measure.by_id(client, ids),
        "state_pending": lambda: measure.repeat(client, f"{m}?state=Pending&limit=20", n),
        "pull": lambda: measure.pulls(phone, n)[0],
    }
    found: dict[str, str] = {}
    for kind, work in kinds.items():
        out = args.profile.with_name(f"{args.profile.name}.{run.engine}.{kind}.txt")
        recording = profile.Recording(big.pid, out, rate=500)
        work()
        recording.stop()
        found[kind] = profile.top(out, lines=12)
        print(f"\n{run.engine} {kind} under py-spy: {out}\n{found[kind]}", flush=True)
    return found


def print_timing(t: measure.Timing) -> None:
    print(
        f"  {t.kind:<16} p50 {t.p50_ms:8.2f}  p99 {t.p99_ms:8.2f}  max {t.max_ms:8.2f} ms"
        f"  ({t.count} requests)",
        flush=True,
    )


def targets(run: EngineRun) -> list[dict[str, Any]]:
    """Each target of issue 17 with its figure and whether it is met."""
    checks: list[dict[str, Any]] = []
    for kind, limit in TARGET_P99_MS.items():
        t = run.timing(kind)
        if t is not None:
            checks.append(
                {
                    "kind": kind,
                    "target": f"p99 < {limit:g} ms",
                    "p99_ms": t.p99_ms,
                    "met": t.p99_ms < limit,
                }
            )
    post, empty = run.timing("post"), run.timing("post_empty")
    if post is not None and empty is not None:
        ratio = post.p99_ms / empty.p99_ms
        checks.append(
            {
                "kind": "post",
                "target": f"p99 <= {TARGET_POST_RATIO:g} x empty database's ({empty.p99_ms} ms)",
                "p99_ms": post.p99_ms,
                "ratio": round(ratio, 2),
                "met": ratio <= TARGET_POST_RATIO,
            }
        )
    return checks


def print_table(run: EngineRun) -> None:
    checks = {c["kind"]: c for c in targets(run)}
    built = run.built
    other = "n/a" if run.other_cpu_percent is None else f"{run.other_cpu_percent}%"
    print(
        f"\n{run.engine}: {run.database_bytes / 1e6:.0f} MB, built in "
        f"{built.seconds if built else 0:.0f} s; load average {run.load_before[0]:.2f} "
        f"before, {run.load_after[0]:.2f} after; other processes used {other} of the CPUs"
    )
    header = f"| {'request':<58} | {'p50 ms':>7} | {'p99 ms':>7} | {'max ms':>7} | target"
    print(header)
    print("|" + "-" * 60 + "|--------:|--------:|--------:|-------")
    for t in run.timings:
        check = checks.get(t.kind)
        verdict = ""
        if check is not None:
            verdict = f"{check['target']}: {'met' if check['met'] else 'MISSED'}"
        print(
            f"| {t.request:<58} | {t.p50_ms:7.2f} | {t.p99_ms:7.2f} | {t.max_ms:7.2f} | {verdict}"
        )
    print(f"pulls took {run.pulled} messages")


def run_engine(engine: str, args: argparse.Namespace, cluster: Any) -> EngineRun:
    run = EngineRun(engine)
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-data-") as name:
        big, empty = None, None
        try:
            big, empty, ids = prepare(run, args, Path(name), cluster)
            check_build(run, args)
            run.load_before = os.getloadavg()
            meter = Meter([big.pid, empty.pid], cluster)
            measure_all(run, args, big, empty, ids)
            run.other_cpu_percent = meter.other_percent()
            run.load_after = os.getloadavg()
        except (RuntimeError, httpx.HTTPError) as exc:
            run.problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            for server in (big, empty):
                if server is not None:
                    server.stop()
    return run


class Meter:
    """The share of the CPUs used by other processes than the servers, this one and
    PostgreSQL's, over the measurement."""

    def __init__(self, pids: list[int], cluster: Any) -> None:
        self.pids = pids
        self.pg = postgres.PgWatch(cluster) if cluster is not None else None
        self.start = self._ours(), machine_busy_seconds(), time.monotonic()

    def _ours(self) -> float:
        usage = os.times()
        total = usage.user + usage.system + usage.children_user + usage.children_system
        total += sum(tree_cpu_seconds(pid) or 0.0 for pid in self.pids)
        return total + (self.pg.cpu().total if self.pg is not None else 0.0)

    def other_percent(self) -> float | None:
        ours, busy, wall = self._ours(), machine_busy_seconds(), time.monotonic()
        if busy is None or self.start[1] is None:
            return None
        foreign = (busy - self.start[1]) - (ours - self.start[0])
        return round(max(foreign, 0.0) * 100 / ((os.cpu_count() or 1) * (wall - self.start[2])), 1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cluster = postgres.start() if "postgresql" in args.engines else None
    runs: list[EngineRun] = []
    try:
        for engine in args.engines:
            runs.append(run_engine(engine, args, cluster if engine == "postgresql" else None))
            print_table(runs[-1])
    finally:
        if cluster is not None:
            cluster.stop()
    problems = [f"{r.engine}: {p}" for r in runs for p in r.problems]
    for problem in problems:
        print(f"INVALID RUN: {problem}")
    stamp = results_stamp()
    result = {
        "benchmark": "data",
        "when": stamp,
        "command": " ".join([".venv/bin/python -m bench.data", *(argv or sys.argv[1:])]),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(),
        "engines": {r.engine: {**asdict(r), "targets": targets(r)} for r in runs},
        "valid": not problems,
        "problems": problems,
    }
    out = RESULTS_DIR / f"data-{stamp}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    if problems:
        return 1
    missed = [c for r in runs for c in targets(r) if not c["met"]]
    return 2 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
