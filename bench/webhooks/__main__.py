"""`python -m bench.webhooks`: events a second from phones to a webhook receiver, and the delay.

One run: a fresh data directory and server process on 127.0.0.1 (bench/fleet/server.py, with
`SMSGW_WEBHOOKS_ALLOW_PRIVATE_URLS=true`), an account with one phone and two webhooks
(`sms:sent`, `sms:received`) pointing at a receiver in its own process
(bench/webhooks/receiver.py: answers 204, notes each arrival, checks every signature). Then,
each round: the baseline (the receiver fed directly by a loop that signs and POSTs as the
delivery worker does, at its concurrency), and N events through each path (bench/webhooks/
load.py): phones' state reports (`PATCH /mobile/v1/message`, one `sms:sent` each) and hub posts
(`sms:received` to `/mobile/v1/hooks/{device}/{secret}`). After the rounds, each path once more
at a steady pace, for the delay of a lone event. Reported: delivered events/s, the ratio to the
baseline, and the delay from smsgw's answer to the report or post to the receiver's 204
(p50/p99/max). Exit status: 0 when the run is valid, 1 when an event was lost, arrived twice,
arrived unasked or with a bad signature.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, free_port, machine, report_run, results_stamp
from bench.fleet.server import ROOT, Server
from bench.webhooks.load import LOGIN, Phase, Setup, prepare, run_phase
from bench.webhooks.receiver import ReceiverProcess

PATHS = {"reports": ["reports"], "posts": ["posts"], "both": ["reports", "posts"]}
WARMUP_EVENTS = 20


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhooks", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--events", type=int, default=2000, help="events per phase (2000)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="SMSGW_WEBHOOKS_CONCURRENCY of the server and of the baseline (default 8, as smsgw)",
    )
    parser.add_argument(
        "--clients", type=int, default=4, help="concurrent phone-side clients (default 4)"
    )
    parser.add_argument("--path", choices=sorted(PATHS), default="both", help="(default both)")
    parser.add_argument(
        "--paced-events", type=int, default=100, help="events of each paced phase (100; 0: none)"
    )
    parser.add_argument(
        "--paced-rate", type=float, default=20, help="events a second when paced (default 20)"
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=None,
        help="SMSGW_WEBHOOKS_POLL_SECONDS of the server (default: smsgw's own, 1 s)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 20 events, one round, no warm-up"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.rounds, args.paced_events, args.paced_rate = 20, 1, 10, 50.0
    if min(args.events, args.rounds, args.concurrency, args.clients) < 1:
        parser.error("--events, --rounds, --concurrency and --clients must be at least 1")
    if args.paced_events < 0 or args.paced_rate <= 0:
        parser.error("--paced-events must be 0 or more, --paced-rate above 0")
    args.paths = PATHS[args.path]
    return args


def server_settings(args: argparse.Namespace) -> dict[str, str]:
    settings = {
        "SMSGW_WEBHOOKS_ALLOW_PRIVATE_URLS": "true",
        "SMSGW_WEBHOOKS_CONCURRENCY": str(args.concurrency),
        # The reports path measures the events smsgw makes from state reports. The bench's
        # phone names no app release, so smsgw takes it for one that posts its own sms:sent
        # and would hold each reported one 30 s for that post (docs/webhooks.md), which it
        # never makes: a wait, not a delivery, measured.
        "SMSGW_WEBHOOKS_PHONE_POST_WAIT_SECONDS": "0",
    }
    if args.poll_seconds is not None:
        settings["SMSGW_WEBHOOKS_POLL_SECONDS"] = str(args.poll_seconds)
    return settings


async def measure(args: argparse.Namespace, setup: Setup) -> list[Phase]:
    """Warm-up (round 0), the rounds, then the paced phases (round -1)."""
    within = max(60.0, args.events / 10)
    phases: list[Phase] = []

    async def phase(path: str, events: int, rate: float | None, number: int) -> Phase:
        what = f"{events} events" + (f" at {rate:g}/s" if rate else "")
        print(f"bench.webhooks: round {number}, {path}, {what} ...", flush=True)
        done = await run_phase(setup, path, events, args.clients, rate, number, within)
        phases.append(done)
        return done

    for path in [] if args.quick else ["baseline", *args.paths]:
        await phase(path, WARMUP_EVENTS, None, 0)
    for number in range(1, args.rounds + 1):
        baseline = await phase("baseline", args.events, None, number)
        for path in args.paths:
            done = await phase(path, args.events, None, number)
            done.ratio = round(done.delivered_per_s / baseline.delivered_per_s, 3)
    if args.paced_events:
        for path in args.paths:
            await phase(path, args.paced_events, args.paced_rate, -1)
    return phases


async def run(args: argparse.Namespace, tmp: Path) -> list[Phase]:
    server = Server(tmp / "data", tmp / "server.log", [LOGIN], server_settings(args))
    setup: Setup | None = None
    try:
        setup = await prepare(server, free_port(), args.concurrency)
        setup.receiver = ReceiverProcess(setup.receiver_port, setup.signing_key, ROOT)
        return await measure(args, setup)
    finally:
        if setup is not None:
            if setup.receiver is not None:
                await setup.receiver.close()
            await setup.api.aclose()
        server.stop()


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def print_table(phases: list[Phase]) -> None:
    header = (
        f"{'round':>5} {'path':<8} {'mode':<6} {'events':>6} {'sent/s':>7} {'deliv/s':>8} "
        f"{'ratio':>6} {'delay p50':>9} {'p99 ms':>8} {'max ms':>8} {'lost':>4} {'dup':>4} "
        f"{'srv ms/ev':>9} {'rcv ms/ev':>9} {'cli cpu%':>8} {'other%':>6}"
    )
    print(header)
    print("-" * len(header))
    for p in phases:
        label = {0: "warm", -1: "paced"}.get(p.round, str(p.round))
        print(
            f"{label:>5} {p.path:<8} {p.mode:<6} {p.events:>6} {p.load_per_s:>7.1f} "
            f"{p.delivered_per_s:>8.1f} {_num(p.ratio, 2):>6} {p.delay_p50_ms:>9.1f} "
            f"{p.delay_p99_ms:>8.1f} {p.delay_max_ms:>8.1f} {p.lost:>4} {p.duplicates:>4} "
            f"{_num(p.server_cpu_ms_per_event, 2):>9} {_num(p.receiver_cpu_ms_per_event, 2):>9} "
            f"{p.client_cpu_percent:>8.0f} {_num(p.other_cpu_percent, 0):>6}"
        )


def summary(phases: list[Phase], paths: list[str]) -> dict[str, Any]:
    """Per path: the measured round with the median ratio, and the paced phase."""
    result: dict[str, Any] = {}
    for path in paths:
        rounds = sorted((p for p in phases if p.path == path and p.round > 0),
                        key=lambda p: p.ratio or 0.0)  # fmt: skip
        median = rounds[(len(rounds) - 1) // 2]
        baseline = next(p for p in phases if p.path == "baseline" and p.round == median.round)
        paced = next((p for p in phases if p.path == path and p.round == -1), None)
        delay = {"p50": median.delay_p50_ms, "p99": median.delay_p99_ms,
                 "max": median.delay_max_ms}  # fmt: skip
        lone = None
        if paced is not None:
            lone = {"rate": paced.offered_per_s, "p50": paced.delay_p50_ms,
                    "p99": paced.delay_p99_ms, "max": paced.delay_max_ms}  # fmt: skip
        result[path] = {
            "round": median.round,
            "delivered_per_s": median.delivered_per_s,
            "baseline_per_s": baseline.delivered_per_s,
            "ratio": median.ratio,
            "ratios": [p.ratio for p in rounds],
            "delay_ms": delay,
            "paced_delay_ms": lone,
        }
    return result


def print_summary(result: dict[str, Any]) -> None:
    for path, s in result.items():
        paced = s["paced_delay_ms"]
        lone = (
            ""
            if paced is None
            else f"; paced at {paced['rate']:g}/s: delay p50 {paced['p50']:.0f} / p99 "
            f"{paced['p99']:.0f} ms"
        )
        print(
            f"{path}: {s['delivered_per_s']:.1f} events/s delivered vs {s['baseline_per_s']:.1f} "
            f"baseline = ratio {s['ratio']:.2f} (median of {statistics.median(s['ratios']):.2f} "
            f"over {len(s['ratios'])} rounds); delay p50 {s['delay_ms']['p50']:.0f} / p99 "
            f"{s['delay_ms']['p99']:.0f} / max {s['delay_ms']['max']:.0f} ms{lone}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-webhooks-") as tmp:
        phases = asyncio.run(run(args, Path(tmp)))
    elapsed = time.monotonic() - started
    problems = [problem for p in phases for problem in p.problems]
    print()
    print_table(phases)
    print(
        "sent/s = reports or posts answered a second (baseline: its POSTs); deliv/s = events "
        "at the receiver / (last arrival - first request); ratio = deliv/s / the round's "
        "baseline deliv/s; delay = smsgw's answer to the report or post -> the receiver's 204 "
        "(baseline: start of its POST -> 204)"
    )
    result = summary(phases, args.paths)
    print_summary(result)
    measured = [p for p in phases if p.round != 0]
    busy = report_run([p.other_cpu_percent or 0.0 for p in measured], problems)
    stamp = results_stamp()
    out = RESULTS_DIR / f"webhooks-{stamp}.json"
    out.write_text(json.dumps({
        "benchmark": "webhooks",
        "when": stamp,
        "command": " ".join([".venv/bin/python -m bench.webhooks", *(argv or sys.argv[1:])]),
        "settings": {k: v for k, v in vars(args).items() if k != "quick"} | {
            "server_env": server_settings(args)},
        "machine": machine(),
        "summary": result,
        "phases": [asdict(p) for p in phases],
        "machine_busy": busy,
        "elapsed_s": round(elapsed, 1),
        "valid": not problems,
        "problems": problems,
    }, indent=2) + "\n")  # fmt: skip
    print(f"results: {out.relative_to(ROOT)}  ({elapsed:.0f} s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
