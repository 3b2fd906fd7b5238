"""`python -m bench.smpp`: submit_sm a second through one carrier link (issue 19, requirement 6).

One run: the npm `smpp` SMSC simulator (tests/fakes/smsc-sim.js, receipts on) and a fresh
server process (bench/fleet/server.py, SQLite) on 127.0.0.1; two accounts, "ingest" with no
sender and "link" with one SMPP link (one bind, transceiver, window 10, a throughput limit
far above what is reached), run by `smsgw links run` in a process of its own as
docs/links.md advises for a busy link (`--one-process`: by the server's process). Each
round, `--messages` POSTed through the API as fast as `--concurrency` clients go: first for
"ingest" (the baseline: accepting alone), then for "link", whose messages the link claims
and submits, every one stored before its submit_sm (the API answers only once a message is
committed; each part's intent is committed before its submit_sm goes out). Reported: the
accepted rate, the rate at the simulator over the same interval and their ratio (1.0: no
backlog), the rate at the simulator over the whole phase, the drain after the last accepted
message, each message's time from accepted to submitted (p50, p99, and how much it grew a
second of the load: a backlog building shows there, a pipeline's steady delay does not), the
server's CPU per message (against the baseline's), the simulator's CPU. At the end every
link message must have been submitted exactly once and be Delivered (the simulator's
receipts). With `--jasmin VENV`, the anchor follows in the same run (bench/smpp/jasmin.py):
smsgw stopped, the same load through Jasmin 0.11.0 to the same simulator, and smsgw's rate
over Jasmin's (target: at least 5x); `--jasmin` alone takes the venv `make test` makes
(.venv-jasmin). Exit status: 0 when the run is valid, 1 when it is not, 2 with --strict when
a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench import profile
from bench.common import RESULTS_DIR, machine, report_run, results_stamp
from bench.fleet.server import ROOT, Server
from bench.jasmin import JasminError, default_venv
from bench.smpp.jasmin import JasminPhase, run_jasmin
from bench.smpp.load import (
    KEEP_UP,
    PROFILED_ROUND,
    TARGET_SUBMITS_PER_S,
    WARMUP_ROUND,
    LinksProcess,
    Phase,
    Simulator,
    add_link,
    check_exactly_once,
    keeps_up,
    probe_summary,
    run_phase,
    wait_bind,
)

TARGET_OVER_JASMIN = 5.0
WARMUP_MESSAGES = 200


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.smpp", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--messages", type=int, default=5000, help="per phase (5000)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (3)")
    parser.add_argument("--concurrency", type=int, help="API clients (16; 64 with --rate)")
    parser.add_argument("--window", type=int, default=10, help="the link's window (10)")
    parser.add_argument(
        "--throughput", type=int, default=100_000, help="the link's submit_sm/s limit (100000)"
    )
    parser.add_argument(
        "--rate", type=float, help="pace the POSTs at this many a second (an open loop, "
        "--concurrency in flight at most; 64 unless given): does the simulator keep up with "
        "the accepted rate? Without it, as fast as the clients go",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="SMSGW_WORKERS (1)")
    parser.add_argument(
        "--sqlite-synchronous", choices=["FULL", "NORMAL"], default="FULL",
        help="SMSGW_SQLITE_SYNCHRONOUS of the server (FULL, smsgw's default: a sync a commit)",
    )  # fmt: skip
    parser.add_argument("--dlr-delay-ms", type=int, default=50, help="receipt delay (50 ms)")
    parser.add_argument(
        "--profile", type=Path, help="py-spy on the server during one more link phase, into "
        "this file (collapsed stacks), and print where its time went",
    )  # fmt: skip
    parser.add_argument(
        "--jasmin", type=Path, nargs="?", const=default_venv(), metavar="VENV",
        help="run the same load through Jasmin to the same simulator after smsgw's rounds "
        "(the anchor), from VENV, a venv with jasmin==0.11.0 (default: .venv-jasmin, which "
        "`make test` makes; or SMSGW_JASMIN_VENV)",
    )  # fmt: skip
    parser.add_argument(
        "--links-process", action="store_true", default=True,
        help="run the link in a process of its own (`smsgw links run`), the server with "
        "SMSGW_LINKS=false (docs/links.md, \"A process for the links\": how a link that must "
        "carry 1,000/s runs on a small machine); the default",
    )  # fmt: skip
    parser.add_argument(
        "--one-process", dest="links_process", action="store_false",
        help="run the link in the server's own process instead (SMSGW_LINKS=true: the API's "
        "requests and the link share one event loop)",
    )  # fmt: skip
    parser.add_argument(
        "--probe", action="store_true",
        help="with --links-process: sample what the link's window waits for and time the "
        "group commit's batches in the links' process (bench/smpp/probe), and print them",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200, one round")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.rounds = 200, 1
    if args.probe and not args.links_process:
        parser.error("--probe needs the links' own process (not --one-process)")
    if args.concurrency is None:
        args.concurrency = 16 if args.rate is None else 64
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be above 0")
    if min(args.messages, args.rounds, args.concurrency, args.window, args.workers) < 1:
        parser.error("counts must be at least 1")
    return args


def delivered(data_dir: Path, link_id: str) -> int:
    with sqlite3.connect(data_dir / "smsgw.db") as db:
        query = "SELECT count(*) FROM messages WHERE device_id = ? AND state = 'Delivered'"
        return int(db.execute(query, (link_id,)).fetchone()[0])


async def settle(sim: Simulator, data_dir: Path, link_id: str, texts: list[str]) -> list[str]:
    """After the rounds: every link message submitted once and Delivered (within 120 s)."""
    async with aiohttp.ClientSession() as session:
        problems = check_exactly_once(await sim.get(session, "/submits"), texts)
        broken = (await sim.get(session, "/binds"))["broken"]
    if broken:  # smsgw wrote a PDU it could not frame (docs/links.md, caveat 4)
        problems.append(f"the simulator closed {broken} session(s) on a PDU it could not read")
    deadline = time.monotonic() + 120
    while (count := delivered(data_dir, link_id)) < len(texts):
        if time.monotonic() > deadline:
            problems.append(f"{len(texts) - count} link messages not Delivered within 120 s")
            break
        await asyncio.sleep(0.2)
    return problems


async def run(
    args: argparse.Namespace, tmp: Path
) -> tuple[list[Phase], JasminPhase | None, dict[str, Any] | None, list[str]]:
    """The phases, Jasmin's anchor (--jasmin), the probe's summary (--probe), the problems."""
    sim = Simulator(args.dlr_delay_ms)
    data = tmp / "data"
    server = Server(
        data,
        tmp / "server.log",
        ["ingest", "link"],
        {"SMSGW_WORKERS": str(args.workers), "SMSGW_SQLITE_SYNCHRONOUS": args.sqlite_synchronous}
        | ({"SMSGW_LINKS": "false"} if args.links_process else {}),
    )
    probe = tmp / "probe.json" if args.probe else None
    links = LinksProcess(server, tmp / "links.log", probe) if args.links_process else None
    phases: list[Phase] = []
    texts: list[str] = []
    anchor = None

    async def phase(name: str, number: int, messages: int, spy: Path | None = None) -> Phase:
        print(f"bench.smpp: round {number}, {name}, {messages} messages ...", flush=True)
        done = await run_phase(
            server, sim, name, name, number, messages, args.concurrency,
            within=max(60.0, messages / 50), profile=spy, links=links,
            rate=None if number == 0 else args.rate,
        )  # fmt: skip
        if name == "link":
            texts.extend(f"link {number} {n}" for n in range(messages))
        phases.append(done)
        return done

    try:
        link_id = add_link(server, sim, "link", args.window, args.throughput)
        await wait_bind(sim, 0, "the link")
        if not args.quick:
            await phase("ingest", WARMUP_ROUND, WARMUP_MESSAGES)
            await phase("link", WARMUP_ROUND, WARMUP_MESSAGES)
        for number in range(1, args.rounds + 1):
            baseline = await phase("ingest", number, args.messages)
            link = await phase("link", number, args.messages)
            link.problems += baseline.problems
        if args.profile is not None:
            await phase("link", PROFILED_ROUND, args.messages, args.profile)
        problems = [p for done in phases for p in done.problems]
        problems += await settle(sim, data, link_id, texts)
        if links is not None:
            links.stop()
        server.stop()  # its link unbinds: Jasmin's connector is then the only session
        if args.jasmin is not None:
            anchor = await run_jasmin(
                args.jasmin, tmp / "jasmin", sim, args.messages, args.concurrency,
                args.throughput, within=max(120.0, args.messages / 10),
            )  # fmt: skip
            problems += anchor.problems
    finally:
        if links is not None:
            links.stop()
        server.stop()
        sim.stop()
    probed = None
    if probe is not None:
        if probe.exists():
            probed = probe_summary(json.loads(probe.read_text()))
        else:
            problems.append("the probe of the links' process wrote nothing")
    return phases, anchor, probed, problems


def _num(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def print_table(phases: list[Phase]) -> None:
    header = (
        f"{'round':>5} {'phase':<6} {'msgs':>5} {'accept/s':>8} {'p99 ms':>7} "
        f"{'sim/s load':>10} {'ratio':>5} {'sim/s all':>9} {'drain ms':>8} {'backlog':>7} "
        f"{'lat p50':>7} {'lat p99':>7} {'grow/s':>6} "
        f"{'srv ms/msg':>10} {'of links':>8} {'sim ms/msg':>10} {'cli cpu%':>8} {'other%':>6} "
        f"{'host ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for p in phases:
        label = {WARMUP_ROUND: "warm", PROFILED_ROUND: "prof"}.get(p.round, str(p.round))
        print(
            f"{label:>5} {p.name:<6} {p.messages:>5} {p.accepted_per_s:>8.1f} "
            f"{p.post_p99_ms:>7.1f} {_num(p.submits_during_load_per_s):>10} "
            f"{_num(p.ratio, '.2f'):>5} {_num(p.submits_per_s):>9} {_num(p.drain_ms):>8} "
            f"{_num(p.backlog_at_last_accept, 'd'):>7} "
            f"{_num(p.latency_p50_ms, '.0f'):>7} {_num(p.latency_p99_ms, '.0f'):>7} "
            f"{_num(p.latency_growth_ms_per_s, '.0f'):>6} "
            f"{_num(p.server_cpu_ms_per_message, '.3f'):>10} "
            f"{_num(p.links_cpu_ms_per_message, '.3f'):>8} "
            f"{_num(p.simulator_cpu_ms_per_message, '.3f'):>10} "
            f"{p.client_cpu_percent:>8.0f} {_num(p.other_cpu_percent, '.0f'):>6} "
            f"{_num(p.host_gauge_ms, '.0f'):>7}"
        )


def print_anchor(anchor: JasminPhase) -> None:
    print(
        f"\nJasmin 0.11.0, {anchor.accepted}/{anchor.messages} accepted at "
        f"{anchor.accepted_per_s:.1f}/s; at the simulator {anchor.submits_during_load_per_s}/s "
        f"during the load ({anchor.ratio}x), {_num(anchor.submits_per_s)}/s over the phase, "
        f"drain {_num(anchor.drain_ms, '.0f')} ms, backlog {anchor.backlog_at_last_accept}; "
        f"CPU {_num(anchor.cpu_ms_per_message, '.2f')} ms/msg (jasmind, RabbitMQ, Redis; "
        f"jasmind alone {_num(anchor.jasmind_cpu_ms_per_message, '.2f')}); receipts called "
        f"back {anchor.receipts_called_back}; machine busy {_num(anchor.machine_busy_percent)}%"
    )


def print_probe(probed: dict[str, Any]) -> None:
    print(f"\nthe link's window, over the {probed['busy_ms']} ms it had work (sampled each ms):")
    for state, share in probed["states_percent"].items():
        print(f"  {share:5.1f}%  {state}")
    print("the group commit's batches on the links' process's loop (its CPU, ms):")
    for kind, b in probed["batches"].items():
        print(
            f"  {b['count']:6d}  median {b['median_ms']:6.2f}  p90 {b['p90_ms']:6.2f}  "
            f"max {b['max_ms']:6.1f}  {kind}"
        )


def summary(
    phases: list[Phase], anchor: JasminPhase | None = None, rate: float | None = None
) -> dict[str, Any]:
    """The median measured round (by submit_sm/s at the simulator: over the phase, or with
    `rate` during the load) and its baseline."""
    links = sorted(
        (p for p in phases if p.name == "link" and p.round > 0),
        key=lambda p: (p.submits_per_s if rate is None else p.submits_during_load_per_s) or 0.0,
    )
    if not links:
        return {}
    link = links[len(links) // 2]
    [ingest] = [p for p in phases if p.name == "ingest" and p.round == link.round]
    cpu = link.server_cpu_ms_per_message
    base = ingest.server_cpu_ms_per_message
    return {
        "round": link.round,
        "submits_per_s": link.submits_per_s,
        "submits_during_load_per_s": link.submits_during_load_per_s,
        "accepted_per_s": link.accepted_per_s,
        "simulator_over_accepted": link.ratio,
        "drain_ms": link.drain_ms,
        "latency_p50_ms": link.latency_p50_ms,
        "latency_p99_ms": link.latency_p99_ms,
        "latency_growth_ms_per_s": link.latency_growth_ms_per_s,
        "accepted_over_ingest_baseline": round(link.accepted_per_s / ingest.accepted_per_s, 3),
        "server_cpu_ms_per_message": cpu,
        "ingest_server_cpu_ms_per_message": base,
        "cpu_over_ingest": None if cpu is None or not base else round(cpu / base, 2),
        "target_submits_per_s": TARGET_SUBMITS_PER_S,
        "target_met": (link.submits_per_s or 0.0) >= TARGET_SUBMITS_PER_S
        if rate is None
        else rate >= TARGET_SUBMITS_PER_S and keeps_up(link, rate),
        "spread_submits_per_s": [p.submits_per_s for p in links],
        **paced(links, rate),
        **over_jasmin(link, anchor),
    }


def paced(links: list[Phase], rate: float | None) -> dict[str, Any]:
    """With --rate: the offered rate, and each round's rate at the simulator during the load."""
    if rate is None:
        return {}
    return {
        "offered_per_s": rate,
        "spread_submits_during_load_per_s": [p.submits_during_load_per_s for p in links],
        "rounds_keeping_up": sum(keeps_up(p, rate) for p in links),
    }


def over_jasmin(link: Phase, anchor: JasminPhase | None) -> dict[str, Any]:
    """smsgw's rate at the simulator over Jasmin's, in the same run (none without --jasmin)."""
    if anchor is None or not anchor.submits_per_s or not link.submits_per_s:
        return {}
    ratio = round(link.submits_per_s / anchor.submits_per_s, 2)
    return {
        "jasmin_submits_per_s": anchor.submits_per_s,
        "over_jasmin": ratio,
        "target_over_jasmin": TARGET_OVER_JASMIN,
        "target_over_jasmin_met": ratio >= TARGET_OVER_JASMIN,
    }


def settings(args: argparse.Namespace) -> dict[str, Any]:
    shown = {k: v for k, v in vars(args).items() if k != "profile"}
    return {k: str(v) if isinstance(v, Path) else v for k, v in shown.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="smsgw-bench-smpp-") as tmp,
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        try:
            phases, anchor, probed, problems = runner.run(run(args, Path(tmp)))
        except JasminError as error:
            sys.exit(f"bench.smpp: Jasmin: {error}")
    elapsed = time.monotonic() - started
    print()
    print_table(phases)
    if anchor is not None:
        print_anchor(anchor)
    found = summary(phases, anchor, args.rate)
    if found and args.rate is not None:
        print(
            f"link, paced at {args.rate:.0f}/s, median round {found['round']}: accepted "
            f"{found['accepted_per_s']:.0f}/s, at the simulator "
            f"{_num(found['submits_during_load_per_s'], '.0f')}/s during the load "
            f"({found['simulator_over_accepted']}x), drain {_num(found['drain_ms'], '.0f')} ms, "
            f"from accepted to submitted {_num(found['latency_p50_ms'], '.0f')} ms p50, "
            f"{_num(found['latency_p99_ms'], '.0f')} ms p99, growing "
            f"{_num(found['latency_growth_ms_per_s'], '.0f')} ms a second of load; "
            f"keeps up (at least {KEEP_UP}x of each): {found['rounds_keeping_up']} of "
            f"{len(found['spread_submits_during_load_per_s'])} rounds (rounds during the load "
            f"{found['spread_submits_during_load_per_s']}); target {TARGET_SUBMITS_PER_S:.0f}/s "
            f"with no backlog: {'met' if found['target_met'] else 'MISSED'}"
        )
    elif found:
        print(
            f"link, median round {found['round']}: {_num(found['submits_per_s'], '.0f')} "
            f"submit_sm/s at the simulator (target {TARGET_SUBMITS_PER_S:.0f}: "
            f"{'met' if found['target_met'] else 'MISSED'}; rounds "
            f"{found['spread_submits_per_s']}); during the load "
            f"{found['simulator_over_accepted']}x the accepted rate; server CPU "
            f"{found['server_cpu_ms_per_message']} ms per message submitted "
            f"({found['cpu_over_ingest']}x accepting alone)"
        )
    if "over_jasmin" in found:
        print(
            f"smsgw over Jasmin 0.11.0 at the same simulator, same run: "
            f"{found['over_jasmin']}x (target {TARGET_OVER_JASMIN:.0f}x: "
            f"{'met' if found['target_over_jasmin_met'] else 'MISSED'})"
        )
    if args.profile is not None:
        print(f"\nserver profile of the last link phase ({args.profile}):")
        print(profile.top(args.profile))
        if args.links_process:
            spied = args.profile.with_suffix(".links.txt")
            print(f"\nthe links' process, same phase ({spied}):")
            print(profile.top(spied))
    if probed is not None:
        print_probe(probed)
    busy = report_run([p.other_cpu_percent or 0.0 for p in phases if p.round > 0], problems)
    stamp = results_stamp()
    result = {
        "benchmark": "smpp",
        "when": stamp,
        "command": " ".join([".venv/bin/python -m bench.smpp", *(argv or sys.argv[1:])]),
        "settings": settings(args),
        "machine": machine(),
        "phases": [asdict(p) for p in phases],
        "jasmin": None if anchor is None else asdict(anchor),
        "summary": found,
        "probe": probed,
        "machine_busy": busy,
        "elapsed_s": round(elapsed, 1),
        "valid": not problems,
        "problems": problems,
    }
    out = RESULTS_DIR / f"smpp-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}  ({elapsed:.0f} s)")
    if problems:
        return 1
    missed = not found.get("target_met") or found.get("target_over_jasmin_met") is False
    return 2 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
