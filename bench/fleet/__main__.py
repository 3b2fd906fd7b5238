"""`python -m bench.fleet`: messages through simulated phones beside ingest, and idle SSE.

Part 1 (fleet): one fresh server (see bench/fleet/server.py) and three accounts, measured in
three phases on that same server (bench/fleet/fleet.py): plain ingest (no phone), capacity
(P phones deliver messages posted as fast as the API clients go) and latency (a steady
offered rate through Q phones). Reported against the targets of issue 15: the server's CPU
per delivered message at most 5x its CPU per accepted message; at least 300 delivered msg/s
and 0.25x the ingest rate; POST-to-Delivered p50 < 150 ms and p99 < 500 ms at 50 msg/s
through 20 phones. Every message must be sent exactly once and end Delivered.

Part 2 (sse): a fresh server, D phones registered, then idle event streams opened (several per
phone) up to 1,000, 5,000 and 10,000, with the server's RSS read at each level against its RSS
with no stream open. Exit status: 0 when the run is valid, 1 when it is not (a message lost or
sent twice), 2 with --strict when a target is missed.
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
from typing import Any

import uvloop

from bench import profile
from bench.common import RESULTS_DIR, machine, report_run, results_stamp
from bench.fleet.fleet import DeliveryResult, IngestResult, run_delivery, run_ingest
from bench.fleet.server import ROOT, Server, raise_nofile
from bench.fleet.sse import SseResult, run_sse

TARGET_CONNECTIONS = 10_000
TARGET_RSS_MIB = 1024.0
#: Issue 15's targets.
TARGET_CPU_RATIO = 5.0
TARGET_DELIVERED_PER_S = 300.0
TARGET_INGEST_SHARE = 0.25
TARGET_P50_MS = 150.0
TARGET_P99_MS = 500.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fleet", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--ingest-messages", type=int, default=3000, help="messages of the ingest phase (3000)"
    )
    parser.add_argument(
        "--capacity-phones", type=int, default=50, help="phones of the capacity phase (50)"
    )
    parser.add_argument(
        "--capacity-messages", type=int, default=3000, help="messages of that phase (3000)"
    )
    parser.add_argument(
        "--latency-phones", type=int, default=20, help="phones of the latency phase (20)"
    )
    parser.add_argument(
        "--latency-rate", type=float, default=50, help="msg/s offered in that phase (50)"
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=20, help="how long it is offered (20 s)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="concurrent API clients posting (default 8)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (SMSGW_WORKERS, default 1)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="record the server with py-spy during the capacity phase into this file "
        "(collapsed stacks) and print where its time went",
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
    args.levels = sorted(int(n) for n in args.connections.split(",") if n)
    counts = [
        args.ingest_messages, args.capacity_phones, args.capacity_messages, args.latency_phones,
        args.concurrency, args.workers, args.devices, *args.levels,
    ]  # fmt: skip
    if min(counts) < 1 or args.latency_rate <= 0 or args.latency_seconds <= 0:
        parser.error("counts, the rate and the duration must be positive")
    return args


def show(value: float | None, spec: str = "") -> str:
    """A figure, or n/a when it could not be measured."""
    return "n/a" if value is None else format(value, spec)


def print_fleet(ingest: IngestResult, phases: list[DeliveryResult]) -> None:
    print(
        f"ingest: {ingest.messages} messages, {ingest.msg_per_s:.0f} msg/s, POST p50/p99 "
        f"{ingest.post_p50_ms}/{ingest.post_p99_ms} ms, server CPU "
        f"{ingest.server_cpu_ms_per_message} ms per accepted message"
    )
    header = (
        f"{'phase':>8} {'phones':>6} {'msgs':>5} {'offered/s':>9} {'posted/s':>8} "
        f"{'deliv/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'sent':>5} {'dup':>3} "
        f"{'lost':>4} {'busy ph':>7} {'pulls/m':>7} {'PATCH/m':>7} {'srv cpu%':>8} "
        f"{'srv ms/msg':>10} {'deliv ms/msg':>12} "
        f"{'phones cpu%':>11} {'other%':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in phases:
        print(
            f"{r.phase:>8} {r.phones:>6} {r.messages:>5} {show(r.offered_per_s, '.0f'):>9} "
            f"{r.ingest_msg_per_s:>8.0f} {r.delivered_msg_per_s:>7.1f} "
            f"{r.latency_p50_ms:>7.1f} {r.latency_p99_ms:>7.1f} {r.latency_max_ms:>7.1f} "
            f"{r.sent_total:>5} {r.duplicates:>3} {r.missing:>4} {r.phones_that_sent:>7} "
            f"{r.pulls_per_message:>7.2f} {r.reports_per_message:>7.2f} "
            f"{show(r.server_cpu_percent, '.0f'):>8} {show(r.server_cpu_ms_per_message):>10} "
            f"{show(r.server_delivery_cpu_ms_per_message):>12} {r.client_cpu_percent:>11.0f} "
            f"{show(r.other_cpu_percent, '.0f'):>6}"
        )


def fleet_targets(
    ingest: IngestResult, capacity: DeliveryResult, latency: DeliveryResult
) -> dict[str, Any]:
    """Issue 15's three goals, each with its figure and whether it is met."""
    accepted = ingest.server_cpu_ms_per_message
    delivered = capacity.server_delivery_cpu_ms_per_message
    ratio = None if not accepted or delivered is None else round(delivered / accepted, 2)
    share = round(capacity.delivered_msg_per_s / ingest.msg_per_s, 3) if ingest.msg_per_s else 0
    return {
        "cpu_ratio": ratio,
        "cpu_ratio_met": ratio is not None and ratio <= TARGET_CPU_RATIO,
        "delivered_per_s": capacity.delivered_msg_per_s,
        "ingest_share": share,
        "rate_met": capacity.delivered_msg_per_s >= TARGET_DELIVERED_PER_S
        and share >= TARGET_INGEST_SHARE,
        "latency_p50_ms": latency.latency_p50_ms,
        "latency_p99_ms": latency.latency_p99_ms,
        "latency_met": latency.latency_p50_ms < TARGET_P50_MS
        and latency.latency_p99_ms < TARGET_P99_MS,
    }


def print_targets(targets: dict[str, Any]) -> None:
    def verdict(met: bool) -> str:
        return "met" if met else "MISSED"

    print(
        f"CPU per delivered message / CPU per accepted message: {targets['cpu_ratio']}x "
        f"(target <= {TARGET_CPU_RATIO:.0f}x: {verdict(targets['cpu_ratio_met'])})"
    )
    print(
        f"delivered: {targets['delivered_per_s']} msg/s, {targets['ingest_share']}x ingest "
        f"(target >= {TARGET_DELIVERED_PER_S:.0f} msg/s and >= {TARGET_INGEST_SHARE}x: "
        f"{verdict(targets['rate_met'])})"
    )
    print(
        f"latency: p50 {targets['latency_p50_ms']} ms, p99 {targets['latency_p99_ms']} ms "
        f"(target < {TARGET_P50_MS:.0f} / < {TARGET_P99_MS:.0f} ms: "
        f"{verdict(targets['latency_met'])})"
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


async def fleet_part(
    args: argparse.Namespace, tmp: Path
) -> tuple[IngestResult, list[DeliveryResult]]:
    settings = {"SMSGW_WORKERS": str(args.workers)}
    server = Server(tmp / "fleet", tmp / "fleet.log", ["ingest", "capacity", "latency"], settings)
    try:
        print(f"bench.fleet: ingest, {args.ingest_messages} messages ...", flush=True)
        ingest = await run_ingest(server, args.ingest_messages, args.concurrency)
        print(
            f"bench.fleet: capacity, {args.capacity_phones} phones, "
            f"{args.capacity_messages} messages ...",
            flush=True,
        )
        capacity = await run_delivery(
            server, "capacity", "capacity", args.capacity_phones, args.capacity_messages,
            args.concurrency, None, ingest, deliver_within=300, profile=args.profile,
        )  # fmt: skip
        count = round(args.latency_rate * args.latency_seconds)
        print(
            f"bench.fleet: latency, {args.latency_phones} phones, {count} messages at "
            f"{args.latency_rate:.0f}/s ...",
            flush=True,
        )
        latency = await run_delivery(
            server, "latency", "latency", args.latency_phones, count, args.concurrency,
            args.latency_rate, ingest, deliver_within=120,
        )  # fmt: skip
    finally:
        server.stop()
    return ingest, [capacity, latency]


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
    ingest: IngestResult | None = None
    fleet: list[DeliveryResult] = []
    sse: SseResult | None = None
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-fleet-") as tmp:
        if not args.skip_fleet:
            # The phones and API clients run on uvloop, as the server does: the client
            # process's own CPU is what bounds the capacity phase (docs/performance.md).
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                ingest, fleet = runner.run(fleet_part(args, Path(tmp)))
        if not args.skip_sse:
            sse = asyncio.run(sse_part(args, Path(tmp)))
    elapsed = time.monotonic() - started

    problems = [problem for r in fleet for problem in r.problems]
    targets: dict[str, Any] = {}
    if ingest is not None:
        print()
        print_fleet(ingest, fleet)
        print(
            "deliv ms/msg = server CPU per message of the phase less the ingest CPU per message; "
            "latency = POST sent to the server's answer to the phone's Delivered report"
        )
        targets = fleet_targets(ingest, fleet[0], fleet[1])
        print_targets(targets)
        if args.profile is not None:
            print(f"\nserver profile of the capacity phase ({args.profile}):")
            print(profile.top(args.profile))
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
            "ingest_messages": args.ingest_messages,
            "capacity_phones": args.capacity_phones,
            "capacity_messages": args.capacity_messages,
            "latency_phones": args.latency_phones,
            "latency_rate": args.latency_rate,
            "latency_seconds": args.latency_seconds,
            "concurrency": args.concurrency,
            "workers": args.workers,
            "sse_levels": args.levels,
            "sse_devices": args.devices,
            "rlimit_nofile": nofile,
        },
        "machine": machine(),
        "ingest": asdict(ingest) if ingest is not None else None,
        "fleet": [asdict(r) for r in fleet],
        "sse": asdict(sse) if sse is not None else None,
        "targets": {
            **targets,
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
    missed = target_met is False or any(
        targets.get(key) is False for key in ("cpu_ratio_met", "rate_met", "latency_met")
    )
    if args.strict and missed:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
