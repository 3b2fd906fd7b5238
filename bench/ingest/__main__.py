"""`python -m bench.ingest`: POST /messages with Basic auth against a no-storage baseline.

One run: a fresh data directory, an account, one real server process on 127.0.0.1 (see
bench/ingest/server.py), then wrk against the baseline (`POST /bench/noop`) and the real
endpoint (`POST /api/3rdparty/v1/messages`) in turn, with the same body, headers, connections
and duration. It prints a table and the ratio ingest/baseline, checks every answer was a 2xx
and that the server stored as many messages as it accepted, and writes the figures as JSON to
bench/results/. Exit status: 0 when the run is valid, 1 when it is not (errors, non-2xx, lost
messages), 2 with --strict when it is valid but misses the target.
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

ROOT = Path(__file__).resolve().parents[2]
LUA_SCRIPT = Path(__file__).with_name("post.lua")
INGEST_PATH = "/api/3rdparty/v1/messages"
LOGIN = "bench"
PASSWORD = "bench-password-0123"  # a throwaway account in a throwaway database
BODY = '{"phoneNumbers":["+12025550100"],"textMessage":{"text":"bench"}}'
TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
#: Above this share of the CPUs used by other processes during a measurement, say so.


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
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    args = parser.parse_args(argv)
    if min(args.connections, args.threads, args.duration, args.rounds) < 1 or args.warmup < 0:
        parser.error("connections, threads, duration and rounds must be at least 1")
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


def start_server(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.ingest.server"],
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


def check_endpoints(client: httpx.Client) -> None:
    """One request each before loading: right credentials, right answers (and a warm cache)."""
    for path in (BASELINE_PATH, INGEST_PATH):
        answer = client.post(path, content=BODY, headers={"Content-Type": "application/json"})
        if answer.status_code != 200:
            sys.exit(f"bench: POST {path} answered {answer.status_code}: {answer.text}")


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
) -> Measurement:
    cpu_before, busy_before = tree_cpu_seconds(server_pid), machine_busy_seconds()
    wrk_before = children_cpu_seconds()
    raw = wrk_post(wrk, f"{base_url}{path}", seconds, args.threads, args.connections)
    cpu_after, busy_after = tree_cpu_seconds(server_pid), machine_busy_seconds()
    wrk_cpu = children_cpu_seconds() - wrk_before
    errors: dict[str, int] = raw["errors"]
    non_2xx = errors.pop("status")
    duration_s = raw["duration_us"] / 1e6
    cpu_ms = other = None
    if cpu_before is not None and cpu_after is not None and raw["requests"]:
        cpu_ms = round((cpu_after - cpu_before) * 1000 / raw["requests"], 3)
        if busy_before is not None and busy_after is not None:
            # What the rest of the machine used meanwhile: a busy neighbour skews the figures.
            foreign = (busy_after - busy_before) - (cpu_after - cpu_before) - wrk_cpu
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


def print_table(rounds: list[tuple[Measurement, Measurement]]) -> None:
    header = f"{'round':>5}  {'endpoint':<30} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
    header += f"{'max ms':>8} {'requests':>9} {'non-2xx':>7} {'sock err':>8} "
    header += f"{'srv cpu ms/req':>14} {'other cpu %':>11}"
    print(header)
    print("-" * len(header))
    for number, pair in enumerate(rounds, start=1):
        for m in pair:
            print(
                f"{number:>5}  {'POST ' + m.path:<30} {m.requests_per_s:>9.1f} "
                f"{m.latency_ms['p50']:>8.2f} {m.latency_ms['p99']:>8.2f} "
                f"{m.latency_ms['max']:>8.2f} {m.requests:>9} {m.non_2xx:>7} "
                f"{sum(m.socket_errors.values()):>8} "
                f"{_num(m.server_cpu_ms_per_request):>14} {_num(m.other_cpu_percent):>11}"
            )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("bench: wrk is not installed (`make bench` installs it: apt-get install wrk)")

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    data_parent = str(args.data_parent) if args.data_parent else None
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-", dir=data_parent) as tmp:
        data_dir = Path(tmp) / "data"
        env = server_env(data_dir, port, args)
        create_account(env)
        log_path = Path(tmp) / "server.log"
        server = start_server(env, log_path)
        rounds: list[tuple[Measurement, Measurement]] = []
        stored: list[int] = []
        try:
            wait_ready(server, base_url, log_path)
            with httpx.Client(base_url=base_url, auth=(LOGIN, PASSWORD), timeout=10) as client:
                check_endpoints(client)
                print(
                    f"bench.ingest: wrk -t{args.threads} -c{args.connections}, "
                    f"{args.warmup}s warm-up then {args.duration}s per endpoint, "
                    f"{args.rounds} round(s), server {base_url} (log level {args.log_level}, "
                    f"synchronous={args.sqlite_synchronous})",
                    flush=True,
                )
                pid = server.pid
                if args.warmup:  # wrk refuses a zero duration
                    run_wrk(wrk, base_url, BASELINE_PATH, "baseline", args.warmup, args, pid)
                    run_wrk(wrk, base_url, INGEST_PATH, "ingest", args.warmup, args, pid)
                for _ in range(args.rounds):
                    baseline = run_wrk(
                        wrk, base_url, BASELINE_PATH, "baseline", args.duration, args, pid
                    )
                    before = stored_messages(client)
                    ingest = run_wrk(wrk, base_url, INGEST_PATH, "ingest", args.duration, args, pid)
                    time.sleep(0.5)  # requests still in flight when wrk stopped may commit
                    stored.append(stored_messages(client) - before)
                    rounds.append((baseline, ingest))
            info = machine(wrk, data_dir)
        finally:
            stop_server(server)

    print()
    print_table(rounds)
    ratios = [ingest.requests_per_s / baseline.requests_per_s for baseline, ingest in rounds]
    chosen = sorted(range(len(rounds)), key=lambda i: ratios[i])[len(rounds) // 2]
    baseline, ingest = rounds[chosen]
    ratio = ratios[chosen]

    problems: list[str] = []
    for number, ((b, i), count) in enumerate(zip(rounds, stored, strict=True), start=1):
        for m in (b, i):
            if not m.clean:
                problems.append(
                    f"round {number}, {m.endpoint}: {m.non_2xx} non-2xx answers, "
                    f"socket errors {m.socket_errors}"
                )
        # wrk stops at the deadline without counting answers still in flight; those requests
        # may still commit, so up to one per connection more can be stored than were counted.
        if not i.accepted <= count <= i.accepted + args.connections:
            problems.append(
                f"round {number}: wrk counted {i.accepted} accepted messages, "
                f"the server stored {count}"
            )
    ratio_met = ratio >= TARGET_RATIO
    p99_met = ingest.latency_ms["p99"] < TARGET_P99_MS
    print()
    print(
        f"ratio ingest/baseline: {ingest.requests_per_s:.0f} / {baseline.requests_per_s:.0f} "
        f"req/s = {ratio:.2f}  (target >= {TARGET_RATIO:.2f}: {'met' if ratio_met else 'MISSED'})"
    )
    print(
        f"ingest p99: {ingest.latency_ms['p99']:.2f} ms at {args.connections} connections  "
        f"(target < {TARGET_P99_MS:.0f} ms: {'met' if p99_met else 'MISSED'})"
    )
    print(f"stored messages: {stored} for {[i.accepted for _, i in rounds]} accepted (by round)")
    busy = report_run([m.other_cpu_percent or 0.0 for pair in rounds for m in pair], problems)
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
            "log_level": args.log_level,
            "sqlite_synchronous": args.sqlite_synchronous,
            "body": BODY,
        },
        "machine": info,
        "rounds": [
            {
                "baseline": asdict(b),
                "ingest": asdict(i),
                "ratio": round(r, 3),
                "stored": count,
            }
            for (b, i), r, count in zip(rounds, ratios, stored, strict=True)
        ],
        "reported_round": chosen + 1,
        "ratio": round(ratio, 3),
        "targets": {
            "ratio_min": TARGET_RATIO,
            "p99_max_ms": TARGET_P99_MS,
            "ratio_met": ratio_met,
            "p99_met": p99_met,
        },
        "machine_busy": busy,
        "valid": not problems,
        "problems": problems,
    }
    out = RESULTS_DIR / f"ingest-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    if problems:
        return 1
    if args.strict and not (ratio_met and p99_met):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
