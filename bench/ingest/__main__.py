"""`python -m bench.ingest`: POST /messages with Basic auth against a bare app and a baseline.

One run: a fresh data directory (or, with `--engine postgresql`, a throwaway durable
PostgreSQL cluster), an account, a real smsgw server on 127.0.0.1 (bench/ingest/server.py)
and beside it a bare FastAPI app of the same shape (bench/ingest/bare.py), served the same
way. Then, round after round, wrk against the bare app, smsgw's no-storage baseline
(`POST /bench/noop`) and the real endpoint (`POST /api/3rdparty/v1/messages`) in turn, with
the same body, headers, connections and duration. It prints a table, the server CPU per
accepted message, the ratio of requests per CPU-second to the bare app's, the p99 against
the bare app's and the ingest/baseline throughput ratio; checks every answer was a 2xx and
that the server stored as many messages as it accepted, and writes the figures as JSON to
bench/results/. Exit status: 0 when the run is valid, 1 when it is not (errors, non-2xx, lost
messages), 2 with --strict when it is valid but misses a target.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from tests import pgcluster

from bench import profile
from bench.common import (
    READY_SECONDS,
    RESULTS_DIR,
    free_port,
    machine_busy_seconds,
    report_run,
    results_stamp,
    tree_cpu_seconds,
)
from bench.common import machine as common_machine
from bench.ingest.server import BASELINE_PATH
from bench.nodes import postgres as pg
from bench.nodes.postgres import PgWatch

ROOT = Path(__file__).resolve().parents[2]
LUA_SCRIPT = Path(__file__).with_name("post.lua")
INGEST_PATH = "/api/3rdparty/v1/messages"
LOGIN = "bench"
PASSWORD = "bench-password-0123"  # a throwaway account in a throwaway database
BODY = '{"phoneNumbers":["+12025550100"],"textMessage":{"text":"bench"}}'
TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
#: Issue 17, goal 5: server CPU per accepted message, requests per CPU-second as a share of
#: the bare app's, and p99 as a multiple of the bare app's (all in the same run).
TARGET_CPU_MS = 0.65
TARGET_CPU_RATIO = 0.6
TARGET_P99_RATIO = 1.5


@dataclass
class WrkCounts:
    """What wrk counted of one run (bench/nodes' loads have them too)."""

    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    latency_ms: dict[str, float]

    @property
    def accepted(self) -> int:
        """Responses with a 2xx (or 3xx) status, as wrk counts them."""
        return self.requests - self.non_2xx

    @property
    def clean(self) -> bool:
        return self.non_2xx == 0 and not any(self.socket_errors.values())


@dataclass
class Measurement(WrkCounts):
    """One wrk run against one endpoint."""

    endpoint: str = ""
    path: str = ""
    duration_s: float = 0.0
    requests_per_s: float = 0.0
    server_cpu_ms_per_request: float | None = None
    wrk_cpu_ms_per_request: float | None = None
    other_cpu_percent: float | None = None
    #: PostgreSQL's processes (with --engine postgresql), not counted in the server's.
    database_cpu_ms_per_request: float | None = None


@dataclass
class Round:
    """One round: the bare app, smsgw's no-storage baseline and ingest, measured in turn."""

    bare: Measurement
    baseline: Measurement
    ingest: Measurement
    stored: int

    @property
    def ratio(self) -> float:
        """Ingest's requests a second as a share of the no-storage baseline's."""
        return self.ingest.requests_per_s / self.baseline.requests_per_s

    @property
    def cpu_ratio(self) -> float | None:
        """Ingest's requests per CPU-second as a share of the bare app's (the CPU per request
        of the bare app over ingest's)."""
        bare, ingest = self.bare.server_cpu_ms_per_request, self.ingest.server_cpu_ms_per_request
        return bare / ingest if bare and ingest else None

    @property
    def p99_ratio(self) -> float:
        """Ingest's p99 as a multiple of the bare app's."""
        return self.ingest.latency_ms["p99"] / self.bare.latency_ms["p99"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds per measurement (default 10)"
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="seconds of warm-up per endpoint (default 3)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="baseline+ingest pairs to measure; the median-ratio round is reported (default 3)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        help="SMSGW_LOG_LEVEL of the server (default info, as `smsgw serve`: access log on)",
    )
    parser.add_argument(
        "--sqlite-synchronous",
        default="FULL",
        choices=["FULL", "NORMAL"],
        help="SMSGW_SQLITE_SYNCHRONOUS of the server (default FULL, the durable default)",
    )
    parser.add_argument(
        "--data-parent",
        type=Path,
        default=None,
        help="where to create the throwaway data directory (default: the system temp dir)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="SMSGW_WORKERS of the server: its processes (default: one per core, as advised)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="SMSGW_DATABASE_URL of the server, e.g. an empty PostgreSQL database "
        "(default: SQLite in the throwaway data directory)",
    )
    parser.add_argument(
        "--engine",
        default="sqlite",
        choices=["sqlite", "postgresql"],
        help="sqlite (default), or postgresql: a throwaway durable cluster of the machine's "
        "PostgreSQL (bench/nodes/postgres.py), stopped at the end",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="after the rounds, py-spy the smsgw server and the bare app during one more "
        "load each; their top functions go to PROFILE.ingest.txt and PROFILE.bare.txt",
    )
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    args = parser.parse_args(argv)
    if min(args.connections, args.threads, args.duration, args.rounds) < 1 or args.warmup < 0:
        parser.error("connections, threads, duration and rounds must be at least 1")
    if args.engine == "postgresql" and args.database_url:
        parser.error("--engine postgresql starts its own cluster: no --database-url with it")
    return args


def server_env(data_dir: Path, port: int, args: argparse.Namespace) -> dict[str, str]:
    """A clean environment: no inherited SMSGW_* setting changes what is measured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
    env.update(
        SMSGW_HOST="127.0.0.1",
        SMSGW_PORT=str(port),
        SMSGW_DATA_DIR=str(data_dir),
        SMSGW_BOOTSTRAP_ACCOUNT="false",
        SMSGW_LOG_LEVEL=args.log_level,
        SMSGW_SQLITE_SYNCHRONOUS=args.sqlite_synchronous,
        SMSGW_WORKERS=str(args.workers),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    if args.database_url:
        env["SMSGW_DATABASE_URL"] = args.database_url
    return env


def create_account(env: dict[str, str]) -> None:
    """The operator's way: `smsgw users create` (it also migrates the fresh database)."""
    command = [sys.executable, "-m", "smsgw", "users", "create", LOGIN, "--password", PASSWORD]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"bench: could not create the account:\n{done.stdout}{done.stderr}")


def start_server(
    env: dict[str, str], log_path: Path, module: str = "bench.ingest.server"
) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", module],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_ready(server: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"bench: the server exited early:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{base_url}/openapi.json", timeout=10).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    sys.exit(f"bench: the server did not answer within {READY_SECONDS} s:\n{log_path.read_text()}")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def check_endpoints(client: httpx.Client, bare_url: str) -> None:
    """One request each before loading: right credentials, right answers (and a warm cache)."""
    headers = {"Content-Type": "application/json"}
    for path in (BASELINE_PATH, INGEST_PATH):
        answer = client.post(path, content=BODY, headers=headers)
        if answer.status_code != 200:
            sys.exit(f"bench: POST {path} answered {answer.status_code}: {answer.text}")
    answer = httpx.post(f"{bare_url}{INGEST_PATH}", content=BODY, headers=headers, timeout=10)
    if answer.status_code != 200:
        sys.exit(f"bench: the bare app answered {answer.status_code}: {answer.text}")


def stored_messages(client: httpx.Client) -> int:
    answer = client.get(INGEST_PATH, params={"limit": 1})
    answer.raise_for_status()
    return int(answer.headers["X-Total-Count"])


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk_post(
    wrk: str,
    url: str,
    seconds: int,
    threads: int,
    connections: int,
    script: Path = LUA_SCRIPT,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """wrk POSTing BODY with the account's Basic auth to `url` (post.lua, or a `script` that
    builds on it, with more variables in `env`); its summary (BENCH_RESULT). Exits when wrk
    fails."""
    environ = dict(os.environ) | (env or {})
    environ["BENCH_BODY"] = BODY
    token = base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
    environ["BENCH_AUTHORIZATION"] = f"Basic {token}"
    command = [
        wrk,
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={seconds}s",
        "--timeout=5s",
        "--latency",
        f"--script={script}",
        url,
    ]
    done = subprocess.run(command, env=environ, capture_output=True, text=True, check=False)
    match = re.search(r"^BENCH_RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        sys.exit(f"bench: wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    raw: dict[str, Any] = json.loads(match.group(1))
    return raw


def run_wrk(
    wrk: str,
    base_url: str,
    path: str,
    endpoint: str,
    seconds: int,
    args: argparse.Namespace,
    server_pid: int,
    database: PgWatch | None = None,
) -> Measurement:
    cpu_before, busy_before = tree_cpu_seconds(server_pid), machine_busy_seconds()
    wrk_before = children_cpu_seconds()
    db_before = database.cpu() if database is not None else None
    raw = wrk_post(wrk, f"{base_url}{path}", seconds, args.threads, args.connections)
    cpu_after, busy_after = tree_cpu_seconds(server_pid), machine_busy_seconds()
    db_cpu = (database.cpu() - db_before).total if database and db_before else 0.0
    wrk_cpu = children_cpu_seconds() - wrk_before
    errors: dict[str, int] = raw["errors"]
    non_2xx = errors.pop("status")
    duration_s = raw["duration_us"] / 1e6
    cpu_ms = other = None
    if cpu_before is not None and cpu_after is not None and raw["requests"]:
        cpu_ms = round((cpu_after - cpu_before) * 1000 / raw["requests"], 3)
        if busy_before is not None and busy_after is not None:
            # What the rest of the machine used meanwhile: a busy neighbour skews the figures.
            foreign = (busy_after - busy_before) - (cpu_after - cpu_before) - wrk_cpu - db_cpu
            other = round(max(foreign, 0) * 100 / ((os.cpu_count() or 1) * duration_s), 1)
    return Measurement(
        endpoint=endpoint,
        path=path,
        requests=raw["requests"],
        duration_s=round(duration_s, 3),
        requests_per_s=round(raw["requests"] / duration_s, 1),
        non_2xx=non_2xx,
        socket_errors=errors,
        latency_ms={k: round(v / 1000, 2) for k, v in raw["latency_us"].items()},
        server_cpu_ms_per_request=cpu_ms,
        wrk_cpu_ms_per_request=round(wrk_cpu * 1000 / max(raw["requests"], 1), 3),
        other_cpu_percent=other,
        database_cpu_ms_per_request=(
            round(db_cpu * 1000 / max(raw["requests"], 1), 3) if database else None
        ),
    )


def mount_of(path: Path) -> str:
    """The file-system type holding `path` (fsync cost depends on it), from /proc/mounts."""
    best, kind = "", "unknown"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    target = str(path.resolve())
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and target.startswith(fields[1]) and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return kind


def machine(wrk: str, data_dir: Path) -> dict[str, Any]:
    """bench/common's description of the machine, plus wrk's version and the data's disk."""
    wrk_version = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return {
        **common_machine(),
        "wrk": (wrk_version.stdout or wrk_version.stderr).split(" [")[0].strip(),
        "data_dir_fs": mount_of(data_dir),
    }


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def print_table(rounds: list[Round]) -> None:
    header = f"{'round':>5}  {'endpoint':<30} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
    header += f"{'max ms':>8} {'requests':>9} {'non-2xx':>7} {'sock err':>8} "
    header += f"{'srv cpu ms/req':>14} {'db cpu ms/req':>13} {'other cpu %':>11}"
    print(header)
    print("-" * len(header))
    for number, one in enumerate(rounds, start=1):
        for m in (one.bare, one.baseline, one.ingest):
            name = "bare app" if m is one.bare else f"POST {m.path}"
            print(
                f"{number:>5}  {name:<30} {m.requests_per_s:>9.1f} "
                f"{m.latency_ms['p50']:>8.2f} {m.latency_ms['p99']:>8.2f} "
                f"{m.latency_ms['max']:>8.2f} {m.requests:>9} {m.non_2xx:>7} "
                f"{sum(m.socket_errors.values()):>8} "
                f"{_num(m.server_cpu_ms_per_request):>14} "
                f"{_num(m.database_cpu_ms_per_request):>13} {_num(m.other_cpu_percent):>11}"
            )


@dataclass
class Servers:
    """What runs during a measurement: smsgw, the bare app, and PostgreSQL if used."""

    wrk: str
    smsgw_url: str
    smsgw: subprocess.Popen[bytes]
    bare_url: str
    bare: subprocess.Popen[bytes]
    database: PgWatch | None


def measure_round(servers: Servers, client: httpx.Client, args: argparse.Namespace) -> Round:
    """The bare app, the baseline and ingest in turn, with the messages ingest stored."""
    s, seconds = servers, args.duration
    bare = run_wrk(s.wrk, s.bare_url, INGEST_PATH, "bare", seconds, args, s.bare.pid)
    baseline = run_wrk(
        s.wrk, s.smsgw_url, BASELINE_PATH, "baseline", seconds, args, s.smsgw.pid, s.database
    )
    before = stored_messages(client)
    ingest = run_wrk(
        s.wrk, s.smsgw_url, INGEST_PATH, "ingest", seconds, args, s.smsgw.pid, s.database
    )
    time.sleep(0.5)  # requests still in flight when wrk stopped may commit
    return Round(bare, baseline, ingest, stored_messages(client) - before)


def warm_up(servers: Servers, args: argparse.Namespace) -> None:
    if args.warmup:  # wrk refuses a zero duration
        s = servers
        run_wrk(s.wrk, s.bare_url, INGEST_PATH, "bare", args.warmup, args, s.bare.pid)
        run_wrk(s.wrk, s.smsgw_url, BASELINE_PATH, "baseline", args.warmup, args, s.smsgw.pid)
        run_wrk(s.wrk, s.smsgw_url, INGEST_PATH, "ingest", args.warmup, args, s.smsgw.pid)


def profiled(servers: Servers, args: argparse.Namespace) -> dict[str, str]:
    """py-spy on smsgw during one more ingest load, and on the bare app during one more of
    its own (bench/profile.py: samples of a thread holding the GIL); the top functions."""
    assert args.profile is not None
    s, tops = servers, {}
    for name, url, server in (("ingest", s.smsgw_url, s.smsgw), ("bare", s.bare_url, s.bare)):
        out = args.profile.with_name(f"{args.profile.name}.{name}.raw")
        recording = profile.Recording(server.pid, out)
        time.sleep(1)  # py-spy attaches to every process first
        load = run_wrk(s.wrk, url, INGEST_PATH, name, args.duration, args, server.pid, s.database)
        recording.stop()
        tops[name] = (
            f"{name} under py-spy: {load.requests_per_s:.0f} req/s, "
            f"{_num(load.server_cpu_ms_per_request)} ms CPU/req; " + profile.top(out, 25)
        )
        top_path = args.profile.with_name(f"{args.profile.name}.{name}.txt")
        top_path.write_text(tops[name] + "\n")
        print(f"\n{tops[name]}\n(collapsed stacks: {out})")
    return tops


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("bench: wrk is not installed (`make bench` installs it: apt-get install wrk)")

    data_parent = str(args.data_parent) if args.data_parent else None
    cluster = None
    try:
        if args.engine == "postgresql":
            cluster = pg.start()
            args.database_url = cluster.create_database()
        with tempfile.TemporaryDirectory(prefix="smsgw-bench-", dir=data_parent) as tmp:
            outcome = run(args, wrk, Path(tmp), cluster)
    finally:
        if cluster is not None:
            cluster.stop()
    return report(args, argv, *outcome)


def run(
    args: argparse.Namespace, wrk: str, tmp: Path, cluster: pgcluster.Cluster | None
) -> tuple[list[Round], dict[str, Any], dict[str, str]]:
    """Start the servers, measure the rounds (and profiles), stop the servers."""
    port, bare_port = free_port(), free_port()
    data_dir = tmp / "data"
    env = server_env(data_dir, port, args)
    create_account(env)
    log_path, bare_log = tmp / "server.log", tmp / "bare.log"
    smsgw = start_server(env, log_path)
    bare = start_server(server_env(tmp / "bare", bare_port, args), bare_log, "bench.ingest.bare")
    database = PgWatch(cluster) if cluster is not None else None
    servers = Servers(
        wrk, f"http://127.0.0.1:{port}", smsgw, f"http://127.0.0.1:{bare_port}", bare, database
    )
    rounds: list[Round] = []
    tops: dict[str, str] = {}
    try:
        wait_ready(smsgw, servers.smsgw_url, log_path)
        wait_ready(bare, servers.bare_url, bare_log)
        with httpx.Client(base_url=servers.smsgw_url, auth=(LOGIN, PASSWORD), timeout=10) as client:
            check_endpoints(client, servers.bare_url)
            print(
                f"bench.ingest: wrk -t{args.threads} -c{args.connections}, "
                f"{args.warmup}s warm-up then {args.duration}s per endpoint, "
                f"{args.rounds} round(s), server {servers.smsgw_url} ({args.engine}, "
                f"{args.workers} process(es), log level {args.log_level}, "
                f"synchronous={args.sqlite_synchronous}), bare app {servers.bare_url}",
                flush=True,
            )
            warm_up(servers, args)
            for _ in range(args.rounds):
                rounds.append(measure_round(servers, client, args))
            if args.profile is not None:
                tops = profiled(servers, args)
        info = machine(wrk, data_dir) | {"engine": args.engine}
    finally:
        stop_server(smsgw)
        stop_server(bare)
    return rounds, info, tops


def report(
    args: argparse.Namespace,
    argv: list[str] | None,
    rounds: list[Round],
    info: dict[str, Any],
    tops: dict[str, str],
) -> int:
    """Print the table and the targets, write the JSON; the exit status."""
    print()
    print_table(rounds)

    # The round with the median ratio of requests per CPU-second (or of throughput, where
    # the CPU could not be read).
    def key(one: Round) -> float:
        return one.cpu_ratio if one.cpu_ratio is not None else one.ratio

    chosen = sorted(range(len(rounds)), key=lambda i: key(rounds[i]))[len(rounds) // 2]
    one = rounds[chosen]
    problems: list[str] = []
    for number, r in enumerate(rounds, start=1):
        for m in (r.bare, r.baseline, r.ingest):
            if not m.clean:
                problems.append(
                    f"round {number}, {m.endpoint}: {m.non_2xx} non-2xx answers, "
                    f"socket errors {m.socket_errors}"
                )
        # wrk stops at the deadline without counting answers still in flight; those requests
        # may still commit, so up to one per connection more can be stored than were counted.
        if not r.ingest.accepted <= r.stored <= r.ingest.accepted + args.connections:
            problems.append(
                f"round {number}: wrk counted {r.ingest.accepted} accepted messages, "
                f"the server stored {r.stored}"
            )
    cpu_ms = one.ingest.server_cpu_ms_per_request
    met = {
        "cpu_ms": cpu_ms is not None and cpu_ms <= TARGET_CPU_MS,
        "cpu_ratio": one.cpu_ratio is not None and one.cpu_ratio >= TARGET_CPU_RATIO,
        "p99_ratio": one.p99_ratio <= TARGET_P99_RATIO,
        "ratio": one.ratio >= TARGET_RATIO,
        "p99": one.ingest.latency_ms["p99"] < TARGET_P99_MS,
    }

    def verdict(name: str) -> str:
        return "met" if met[name] else "MISSED"

    bare_cpu = one.bare.server_cpu_ms_per_request
    print(f"\nround {chosen + 1} (the median ratio of requests per CPU-second):")
    print(
        f"server CPU per accepted message: {_num(cpu_ms)} ms  "
        f"(target <= {TARGET_CPU_MS:.2f} ms: {verdict('cpu_ms')})"
    )
    print(
        f"requests per CPU-second, ingest/bare app: {_num(bare_cpu)} / {_num(cpu_ms)} ms = "
        f"{_num(one.cpu_ratio)}  (target >= {TARGET_CPU_RATIO:.2f}: {verdict('cpu_ratio')})"
    )
    print(
        f"p99 ingest/bare app: {one.ingest.latency_ms['p99']:.2f} / "
        f"{one.bare.latency_ms['p99']:.2f} ms = {one.p99_ratio:.2f}  "
        f"(target <= {TARGET_P99_RATIO:.2f}: {verdict('p99_ratio')})"
    )
    print(
        f"ratio ingest/baseline req/s: {one.ingest.requests_per_s:.0f} / "
        f"{one.baseline.requests_per_s:.0f} = {one.ratio:.2f}  "
        f"(target >= {TARGET_RATIO:.2f}: {verdict('ratio')})"
    )
    print(
        f"ingest p99: {one.ingest.latency_ms['p99']:.2f} ms at {args.connections} connections  "
        f"(target < {TARGET_P99_MS:.0f} ms: {verdict('p99')})"
    )
    if one.ingest.database_cpu_ms_per_request is not None:
        print(
            f"PostgreSQL's own CPU per accepted message (not in the server's): "
            f"{one.ingest.database_cpu_ms_per_request:.2f} ms"
        )
    print(
        f"stored messages: {[r.stored for r in rounds]} for "
        f"{[r.ingest.accepted for r in rounds]} accepted (by round)"
    )
    others = [m.other_cpu_percent or 0.0 for r in rounds for m in (r.bare, r.baseline, r.ingest)]
    busy = report_run(others, problems)
    stamp = results_stamp()
    result = {
        "benchmark": "ingest",
        "when": stamp,
        "command": " ".join([".venv/bin/python -m bench.ingest", *(argv or sys.argv[1:])]),
        "settings": {
            "connections": args.connections,
            "threads": args.threads,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "workers": args.workers,
            "engine": args.engine,
            "log_level": args.log_level,
            "sqlite_synchronous": args.sqlite_synchronous,
            "body": BODY,
        },
        "machine": info,
        "rounds": [
            {
                "bare": asdict(r.bare),
                "baseline": asdict(r.baseline),
                "ingest": asdict(r.ingest),
                "ratio": round(r.ratio, 3),
                "cpu_ratio": round(r.cpu_ratio, 3) if r.cpu_ratio is not None else None,
                "p99_ratio": round(r.p99_ratio, 3),
                "stored": r.stored,
            }
            for r in rounds
        ],
        "reported_round": chosen + 1,
        "ratio": round(one.ratio, 3),
        "cpu_ratio": round(one.cpu_ratio, 3) if one.cpu_ratio is not None else None,
        "p99_ratio": round(one.p99_ratio, 3),
        "targets": {
            "cpu_ms_max": TARGET_CPU_MS,
            "cpu_ratio_min": TARGET_CPU_RATIO,
            "p99_ratio_max": TARGET_P99_RATIO,
            "ratio_min": TARGET_RATIO,
            "p99_max_ms": TARGET_P99_MS,
            **{f"{name}_met": value for name, value in met.items()},
        },
        "profiles": tops,
        "machine_busy": busy,
        "valid": not problems,
        "problems": problems,
    }
    out = RESULTS_DIR / f"ingest-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    if problems:
        return 1
    if args.strict and not all(met.values()):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
