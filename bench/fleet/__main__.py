"""`python -m bench.fleet`: API to Delivered through N simulated phones, and idle SSE capacity.

Part 1 (fleet), for each N: a fresh data directory and server process on 127.0.0.1 (see
bench/fleet/server.py), two accounts. Baseline: M messages through `POST /messages` for an
account with no phone (plain ingest). Then N simulated phones (tests/fakes/phone.py) of the
other account register and open their event streams, M messages are posted, and the Delivered
list is polled to see when each message gets there. Reported: delivered msg/s, the ratio
delivered/ingest, and the POST-to-Delivered latency p50/p99. Every message must be sent
exactly once.

Part 2 (sse): a fresh server, D phones registered, then idle event streams opened (several per
phone) up to 1,000, 5,000 and 10,000, with the server's RSS read at each level against its RSS
with no stream open. Exit status: 0 when the run is valid, 1 when it is not (a message lost or
sent twice), 2 with --strict when 10,000 streams did not fit under 1 GiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench.common import RESULTS_DIR, machine, report_run, results_stamp
from bench.fleet.fleet import FleetResult, run_fleet
from bench.fleet.server import ROOT, Server, raise_nofile
from bench.fleet.sse import SseResult, run_sse

TARGET_CONNECTIONS = 10_000
TARGET_RSS_MIB = 1024.0
#: Above this share of the CPUs used by other processes during a fleet run, say so.


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fleet", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--phones", default="1,10,100", help="fleet sizes N, comma-separated (default 1,10,100)"
    )
    parser.add_argument("--messages", type=int, default=200, help="messages per N (default 200)")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="concurrent API clients posting (default 4)"
    )
    parser.add_argument(
        "--poll-ms", type=float, default=50, help="Delivered-list poll interval (default 50 ms)"
    )
    parser.add_argument(
        "--connections",
        default="1000,5000,10000",
        help="idle SSE levels at which the server's memory is read (default 1000,5000,10000)",
    )
    parser.add_argument(
        "--devices", type=int, default=100, help="phones whose streams are opened (default 100)"
    )
    parser.add_argument("--skip-fleet", action="store_true", help="only the SSE part")
    parser.add_argument("--skip-sse", action="store_true", help="only the fleet part")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    args = parser.parse_args(argv)
    args.phone_counts = [int(n) for n in args.phones.split(",") if n]
    args.levels = sorted(int(n) for n in args.connections.split(",") if n)
    if min([args.messages, args.concurrency, args.devices, *args.phone_counts, *args.levels]) < 1:
        parser.error("counts must be at least 1")
    return args


def print_fleet(results: list[FleetResult]) -> None:
    header = (
        f"{'phones':>6} {'msgs':>5} {'ingest msg/s':>12} {'deliv msg/s':>11} {'ratio':>6} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'sent':>5} {'dup':>4} {'lost':>4} "
        f"{'busy ph':>7} {'srv cpu%':>8} {'srv ms/msg':>10} {'cli cpu%':>8} {'other%':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        server_cpu = "n/a" if r.server_cpu_percent is None else f"{r.server_cpu_percent:.0f}"
        server_ms = (
            "n/a" if r.server_cpu_ms_per_message is None else f"{r.server_cpu_ms_per_message}"
        )
        other = "n/a" if r.other_cpu_percent is None else f"{r.other_cpu_percent:.0f}"
        print(
            f"{r.phones:>6} {r.messages:>5} {r.ingest_msg_per_s:>12.1f} "
            f"{r.delivered_msg_per_s:>11.1f} {r.ratio:>6.2f} {r.latency_p50_ms:>8.1f} "
            f"{r.latency_p99_ms:>8.1f} {r.latency_max_ms:>8.1f} {r.sent_total:>5} "
            f"{r.duplicates:>4} {r.missing:>4} {r.phones_that_sent:>7} {server_cpu:>8} "
            f"{server_ms:>10} {r.client_cpu_percent:>8.0f} {other:>6}"
        )


def print_sse(result: SseResult) -> None:
    header = (
        f"{'streams':>8} {'server RSS MiB':>14} {'KiB/stream':>10} {'client RSS MiB':>14} "
        f"{'open s':>7}"
    )
    print(header)
    print("-" * len(header))
    print(f"{0:>8} {result.baseline_rss_mib:>14.1f} {'':>10} {'':>14} {'':>7}")
    for level in result.levels:
        per = "n/a" if level.per_connection_kib is None else f"{level.per_connection_kib:.1f}"
        client = "n/a" if level.client_rss_mib is None else f"{level.client_rss_mib:.1f}"
        print(
            f"{level.connections:>8} {level.server_rss_mib:>14.1f} {per:>10} {client:>14} "
            f"{level.open_seconds:>7.2f}"
        )


async def fleet_part(args: argparse.Namespace, tmp: Path) -> list[FleetResult]:
    results = []
    for phones in args.phone_counts:
        server = Server(tmp / f"fleet-{phones}", tmp / f"fleet-{phones}.log", ["ingest", "fleet"])
        try:
            print(f"bench.fleet: N={phones} phones, {args.messages} messages ...", flush=True)
            results.append(
                await run_fleet(
                    server,
                    phones,
                    args.messages,
                    args.concurrency,
                    args.poll_ms / 1000,
                    deliver_within=120,
                )
            )
        finally:
            server.stop()
    return results


async def sse_part(args: argparse.Namespace, tmp: Path) -> SseResult:
    server = Server(tmp / "sse", tmp / "sse.log", ["idle"])
    try:
        print(
            f"bench.fleet: idle SSE streams up to {args.levels[-1]} over {args.devices} phones ...",
            flush=True,
        )
        result, streams = await run_sse(server, args.devices, args.levels, 100, settle=2.0)
        for stream in streams:
            stream.close()
        await asyncio.sleep(0.5)
    finally:
        server.stop()
    if server.process.returncode not in (0, -15):
        print(f"note: the SSE server exited with {server.process.returncode}")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    nofile = raise_nofile()
    started = time.monotonic()
    fleet: list[FleetResult] = []
    sse: SseResult | None = None
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-fleet-") as tmp:
        if not args.skip_fleet:
            fleet = asyncio.run(fleet_part(args, Path(tmp)))
        if not args.skip_sse:
            sse = asyncio.run(sse_part(args, Path(tmp)))
    elapsed = time.monotonic() - started

    problems = [problem for r in fleet for problem in r.problems]
    if fleet:
        print()
        print_fleet(fleet)
        print(
            "ratio = delivered msg/s / ingest msg/s (same server, same messages, no phones); "
            f"latency = POST sent to Delivered seen in GET (polled every {args.poll_ms:.0f} ms)"
        )
    target_met = None
    if sse is not None:
        print()
        print_sse(sse)
        top = sse.levels[-1] if sse.levels else None
        target_met = bool(
            top and top.connections >= TARGET_CONNECTIONS and top.server_rss_mib < TARGET_RSS_MIB
        )
        print(
            f"idle SSE: {sse.reached} streams held over {sse.devices} phones; "
            f"server RSS {top.server_rss_mib if top else 0:.0f} MiB "
            f"(baseline {sse.baseline_rss_mib:.0f} MiB); marginal "
            f"{sse.marginal_kib_per_connection} KiB/stream  "
            f"(target {TARGET_CONNECTIONS} under {TARGET_RSS_MIB:.0f} MiB: "
            f"{'met' if target_met else 'MISSED'})"
        )
        for error, count in sse.errors.items():
            print(f"  stream open failed {count}x: {error}")
    busy = report_run([r.other_cpu_percent or 0.0 for r in fleet], problems)
    stamp = results_stamp()
    result = {
        "benchmark": "fleet",
        "when": stamp,
        "command": " ".join([".venv/bin/python -m bench.fleet", *(argv or sys.argv[1:])]),
        "settings": {
            "phones": args.phone_counts,
            "messages": args.messages,
            "concurrency": args.concurrency,
            "poll_ms": args.poll_ms,
            "sse_levels": args.levels,
            "sse_devices": args.devices,
            "rlimit_nofile": nofile,
        },
        "machine": machine(),
        "fleet": [asdict(r) for r in fleet],
        "sse": asdict(sse) if sse is not None else None,
        "targets": {
            "sse_connections": TARGET_CONNECTIONS,
            "sse_rss_max_mib": TARGET_RSS_MIB,
            "sse_met": target_met,
        },
        "machine_busy": busy,
        "elapsed_s": round(elapsed, 1),
        "valid": not problems,
        "problems": problems,
    }
    out = RESULTS_DIR / f"fleet-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}  ({elapsed:.0f} s)")
    if problems:
        return 1
    if args.strict and target_met is False:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
