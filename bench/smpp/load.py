"""The pieces of bench/smpp: the SMSC simulator as a process, the link, and the phases.

A phase POSTs messages through the API as fast as `concurrency` clients go (or paced at
`rate` a second), while the
simulator's count of `submit_sm` is sampled every SAMPLE_SECONDS; it ends when the simulator
has seen every message of the phase (or `within` seconds). The accepted rate is measured
over the POSTs (first request to last answer), the simulator's over the same interval and
over the whole phase (first request to the last message's submit_sm).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import aiohttp

from bench.common import cpu_seconds, free_port, host_gauge_ms
from bench.fleet.fleet import Meter, percentile
from bench.fleet.server import PASSWORD, ROOT, Server
from bench.profile import Recording
from bench.smpp.poster import Poster, poster

MESSAGES = "/api/3rdparty/v1/messages"
NUMBER = "+12025550100"
SCRIPT = ROOT / "tests" / "fakes" / "smsc-sim.js"
MODULES = ROOT / "tests" / "npm" / "node_modules"
SYSTEM_ID, SECRET = "bench", "secret"
SAMPLE_SECONDS = 0.05
#: JSON as the API clients before wrote it (httpx, aiohttp with bench/fleet's serializer).
COMPACT = (",", ":")
PROBE = Path(__file__).parent / "probe"


class Simulator:
    """tests/fakes/smsc-sim.js (npm `smpp`) on free 127.0.0.1 ports, its receipts on."""

    def __init__(self, dlr_delay_ms: int) -> None:
        if not (MODULES / "smpp").is_dir():
            sys.exit("bench.smpp: no npm smpp package: make tests/npm/node_modules/.installed")
        self.port, self.control = free_port(), free_port()
        env = os.environ | {
            "NODE_PATH": str(MODULES), "SMSC_PORT": str(self.port),
            "CONTROL_PORT": str(self.control), "SMSC_USER": SYSTEM_ID, "SMSC_PASS": SECRET,
            "DLR_DELAY_MS": str(dlr_delay_ms),
        }  # fmt: skip
        self.process = subprocess.Popen(
            ["node", str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            sys.exit(f"bench.smpp: the simulator did not start: {line}")
        self.url = f"http://127.0.0.1:{self.control}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    async def get(self, session: aiohttp.ClientSession, path: str) -> Any:
        async with session.get(self.url + path) as answer:
            return await answer.json()


async def wait_bind(sim: Simulator, binds_before: int, who: str, within: float = 60) -> None:
    """Until the simulator has accepted one more bind than `binds_before` (`who`'s)."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while (await sim.get(session, "/binds"))["ok"] <= binds_before:
            if time.monotonic() > deadline:
                sys.exit(f"bench.smpp: {who} did not bind to the simulator")
            await asyncio.sleep(0.1)


class LinksProcess:
    """`smsgw links run` beside the server (started with SMSGW_LINKS=false): the links in a
    process of their own, which serves no HTTP (docs/links.md, "A process for the links")."""

    def __init__(self, server: Server, log_path: Path, probe: Path | None = None) -> None:
        env = server.env
        if probe is not None:  # bench/smpp/probe/sitecustomize.py, into `probe`
            path = os.pathsep.join(filter(None, [str(PROBE), env.get("PYTHONPATH")]))
            env = env | {"PYTHONPATH": path, "BENCH_SMPP_PROBE": str(probe)}
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "smsgw", "links", "run"],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # its links unbind
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def add_link(server: Server, sim: Simulator, login: str, window: int, throughput: int) -> str:
    """`smsgw links add smpp` for `login`, bound to the simulator; the link's id."""
    done = subprocess.run(
        [sys.executable, "-m", "smsgw", "links", "add", "smpp", "--user", login,
         "--host", "127.0.0.1", "--port", str(sim.port), "--system-id", SYSTEM_ID,
         "--password-stdin", "--source", "BENCH", "--window", str(window),
         "--throughput", str(throughput)],
        env=server.env, cwd=ROOT, input=SECRET + "\n", capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"bench.smpp: could not add the link:\n{done.stdout}{done.stderr}")
    return done.stdout.split()[-1]


#: Requirement 6's target: `submit_sm` a second through one bind, with no backlog.
TARGET_SUBMITS_PER_S = 1000.0
#: With --rate: the run keeps up when the API accepted at least this share of the offered
#: rate and the simulator saw at least this share of the accepted rate during the load
#: (what is left is the count's sampling, every 50 ms, at both ends).
KEEP_UP = 0.97
#: The round numbers of a run's warm-up and of its profiled phase (`--profile`); the
#: measured rounds count from 1.
WARMUP_ROUND, PROFILED_ROUND = 0, -1


@dataclass
class Phase:
    name: str
    round: int
    messages: int
    accepted_per_s: float
    post_p50_ms: float
    post_p99_ms: float
    #: submit_sm a second at the simulator while the POSTs ran, and over the whole phase.
    submits_during_load_per_s: float | None = None
    submits_per_s: float | None = None
    #: The simulator's rate during the load over the accepted rate (1.0: no backlog).
    ratio: float | None = None
    #: From the last accepted message to the simulator's last submit_sm of the phase.
    drain_ms: float | None = None
    #: Each message's time from its POST's answer to its submit_sm at the simulator.
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    #: How much that time grew per second of the load (the median of the last tenth of the
    #: messages accepted against the first tenth's): about 0 when the link keeps up, and
    #: about 1000 x (1 - its rate / the accepted rate) ms a second when a backlog builds.
    latency_growth_ms_per_s: float | None = None
    backlog_at_last_accept: int | None = None
    server_cpu_ms_per_message: float | None = None
    #: Of it, the links' process (`--links-process`).
    links_cpu_ms_per_message: float | None = None
    simulator_cpu_ms_per_message: float | None = None
    client_cpu_percent: float = 0.0
    other_cpu_percent: float | None = None
    #: `host_gauge_ms` just before the phase: how fast the host ran then (lower: faster).
    host_gauge_ms: float | None = None
    problems: list[str] = field(default_factory=list)


def keeps_up(link: Phase, rate: float) -> bool:
    """The API accepted the offered rate, and the simulator saw the accepted rate (KEEP_UP)."""
    return link.accepted_per_s >= KEEP_UP * rate and (link.ratio or 0.0) >= KEEP_UP


class Sampler:
    """The simulator's submit_sm count over time, read every SAMPLE_SECONDS."""

    def __init__(self, sim: Simulator, session: aiohttp.ClientSession) -> None:
        self.sim, self.session = sim, session
        self.samples: list[tuple[float, int]] = []

    async def count(self) -> int:
        found: dict[str, int] = await self.sim.get(self.session, "/count")
        self.samples.append((time.monotonic(), found["submits"]))
        return found["submits"]

    async def until(self, target: int, within: float) -> float | None:
        """Sample until the count reaches `target`: when it did (None: not within)."""
        deadline = time.monotonic() + within
        while await self.count() < target:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(SAMPLE_SECONDS)
        return self.samples[-1][0]

    def at(self, moment: float) -> int:
        """The count last read at or before `moment`."""
        seen = [count for when, count in self.samples if when <= moment]
        return seen[-1] if seen else self.samples[0][1]


async def post_all(
    client: Poster, label: str, count: int, concurrency: int,
    rate: float | None = None, accepted: dict[str, float] | None = None,
) -> tuple[float, float, list[float]]:  # fmt: skip
    """POST `count` messages (texts unique within the run); (first start, last end, ms).
    With `rate`, paced: message n is not sent before `n / rate` s from the first (an open
    loop, `concurrency` requests at most in flight), else as fast as the clients go. Each
    text's answer time (wall clock) goes into `accepted`."""
    if accepted is None:
        accepted = {}
    todo = iter(range(count))
    rtts: list[float] = []
    first = last = time.monotonic()
    head = client.head(MESSAGES)

    async def worker() -> None:
        nonlocal last
        for n in todo:
            if rate is not None and (early := first + n / rate - time.monotonic()) > 0:
                await asyncio.sleep(early)
            text = f"{label} {n}"
            body = {"phoneNumbers": [NUMBER], "textMessage": {"text": text}}
            before = time.monotonic()
            status, content = await client.post(head, json.dumps(body, separators=COMPACT).encode())
            if status != 200:
                raise RuntimeError(f"POST /messages answered {status}: {content!r}")
            last = max(last, time.monotonic())
            rtts.append((last - before) * 1000)
            accepted[text] = time.time()  # the simulator's clock

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return first, last, rtts


async def run_phase(
    server: Server, sim: Simulator, login: str, name: str, number: int, messages: int,
    concurrency: int, within: float, profile: Any = None, links: LinksProcess | None = None,
    rate: float | None = None,
) -> Phase:  # fmt: skip
    """One phase: `login`'s messages, through its link when it has one (`name` "link");
    `links`: the process that runs the link, when not the server (its CPU counts as the
    server's, and it is the one profiled)."""
    through_link = name == "link"
    gauge = host_gauge_ms()  # before the load: it would slow the bench's own client
    async with (
        poster(server.base_url, login, PASSWORD, concurrency) as client,
        aiohttp.ClientSession() as s,
    ):
        sampler = Sampler(sim, s)
        start = await sampler.count()
        meter = Meter(server, [links.pid] if links is not None else [])
        links_cpu = cpu_seconds(links.pid) if links is not None else None
        sim_cpu = cpu_seconds(sim.pid)
        recordings = []
        if profile is not None:
            recordings.append(Recording(server.pid, profile))
            if links is not None:
                recordings.append(Recording(links.pid, profile.with_suffix(".links.txt")))
        poll = asyncio.ensure_future(sampler.until(start + messages, within))
        accepted: dict[str, float] = {}
        label = f"{name} {number}"
        first, last, rtts = await post_all(client, label, messages, concurrency, rate, accepted)
        done = await poll if through_link else None
        if not through_link:
            poll.cancel()
        for recording in recordings:
            recording.stop()
        usage = meter.stop()
        links_after = cpu_seconds(links.pid) if links is not None else None
        sim_after = cpu_seconds(sim.pid)
        submitted = await sim.get(s, "/submits") if through_link and done is not None else []
    phase = Phase(
        name, number, messages, round(messages / (last - first), 1),
        round(percentile(rtts, 50), 2), round(percentile(rtts, 99), 2),
        client_cpu_percent=round(usage.client_cpu * 100 / usage.wall, 1),
        other_cpu_percent=usage.other_cpu_percent, host_gauge_ms=gauge,
    )  # fmt: skip
    if usage.server_cpu is not None:
        phase.server_cpu_ms_per_message = round(usage.server_cpu * 1000 / messages, 3)
    if links_cpu is not None and links_after is not None:
        phase.links_cpu_ms_per_message = round((links_after - links_cpu) * 1000 / messages, 3)
    if not through_link:
        return phase
    if sim_cpu is not None and sim_after is not None:
        phase.simulator_cpu_ms_per_message = round((sim_after - sim_cpu) * 1000 / messages, 3)
    during = sampler.at(last) - sampler.at(first)
    phase.submits_during_load_per_s = round(during / (last - first), 1)
    phase.ratio = round(phase.submits_during_load_per_s / phase.accepted_per_s, 3)
    phase.backlog_at_last_accept = start + messages - sampler.at(last)
    if done is None:
        phase.problems.append(f"{name} round {number}: not every submit_sm within {within} s")
    else:
        phase.submits_per_s = round(messages / (done - first), 1)
        phase.drain_ms = round(max(0.0, done - last) * 1000, 1)
        latencies(phase, accepted, submitted)
    return phase


def latencies(phase: Phase, accepted: dict[str, float], submitted: list[dict[str, Any]]) -> None:
    """Each accepted message's time to its submit_sm (`at`, ms since the epoch, the
    simulator's), their p50 and p99, and how they grew over the load."""
    seen = [
        (accepted[s["text"]], s["at"] / 1000 - accepted[s["text"]])
        for s in submitted
        if s["text"] in accepted and s.get("at") is not None
    ]
    if len(seen) < 20:
        return
    seen.sort()
    waits = [wait * 1000 for _, wait in seen]
    phase.latency_p50_ms = round(percentile(waits, 50), 1)
    phase.latency_p99_ms = round(percentile(waits, 99), 1)
    tenth = len(seen) // 10
    early, late = seen[:tenth], seen[-tenth:]
    span = late[len(late) // 2][0] - early[len(early) // 2][0]
    if span > 0:
        grew = median(w for _, w in late) - median(w for _, w in early)
        phase.latency_growth_ms_per_s = round(grew * 1000 / span, 1)


def check_exactly_once(sim_submits: list[dict[str, Any]], texts: list[str]) -> list[str]:
    """Every text submitted once at the simulator, nothing else."""
    seen: dict[str, int] = {}
    for submit in sim_submits:
        seen[submit["text"]] = seen.get(submit["text"], 0) + 1
    problems = []
    twice = [t for t, n in seen.items() if n > 1]
    missing = [t for t in texts if t not in seen]
    strangers = [t for t in seen if t not in set(texts)]
    if twice:
        problems.append(f"{len(twice)} messages submitted more than once, e.g. {twice[0]!r}")
    if missing:
        problems.append(f"{len(missing)} messages never submitted, e.g. {missing[0]!r}")
    if strangers:
        problems.append(f"{len(strangers)} submits of unknown texts, e.g. {strangers[0]!r}")
    return problems


def probe_summary(found: dict[str, Any]) -> dict[str, Any]:
    """What the probe of the links' process wrote: the share of the time the link had work
    that its window spent in each state, and the group commit's batches on the loop by kind
    (count, median, p90, max ms of the loop thread's CPU)."""
    busy = sum(found["states"].values()) or 1.0
    states = {k: round(v * 100 / busy, 1) for k, v in found["states"].items()}
    batches = {
        kind: {
            "count": len(times),
            "median_ms": round(percentile(times, 50), 2),
            "p90_ms": round(percentile(times, 90), 2),
            "max_ms": round(max(times), 2),
        }
        for kind, times in found["batches_ms"].items()
        if times
    }
    return {
        "busy_ms": round(busy),
        "states_percent": dict(sorted(states.items(), key=lambda kv: -kv[1])),
        "batches": dict(sorted(batches.items(), key=lambda kv: -kv[1]["count"])),
    }
