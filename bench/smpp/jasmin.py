"""Jasmin 0.11.0, the anchor of bench/smpp (issue 19, requirement 6): the same load through
Jasmin's HTTP API to the same simulator, in the same run.

What runs (test-peers.md §2.3, with free 127.0.0.1 ports and a scratch directory of the
run): Redis and RabbitMQ from apt (and an `epmd` of its own for RabbitMQ), `jasmind.py` of
a venv holding `jasmin==0.11.0` (`--jasmin VENV`) with its receipt thrower and lookup in the
same process; through jCli, a user, an SMPP client connector bound to the simulator with
the link's window and throughput, and a default route to it. Then `messages` sent with
`GET /send` (`dlr-level=2`: Jasmin calls a local sink back with each receipt) by
`concurrency` clients, the simulator's count read as for smsgw, and the CPU of jasmind,
RabbitMQ and Redis counted.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.common import free_port, machine_busy_seconds, tree_cpu_seconds
from bench.smpp.load import SECRET, SYSTEM_ID, Sampler, Simulator, wait_bind

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import telnetlib  # jCli is a telnet console; removed from the standard library in 3.13

RABBIT = Path("/usr/lib/rabbitmq/bin")
NUMBER = "12025550100"
PROMPTS = [re.compile(rb"jcli : $"), re.compile(rb"> $")]
START_SECONDS = 90.0


@dataclass
class JasminPhase:
    """One load through Jasmin, measured as bench/smpp measures smsgw's link phase."""

    messages: int
    accepted: int
    accepted_per_s: float
    submits_during_load_per_s: float
    ratio: float
    submits_per_s: float | None = None
    drain_ms: float | None = None
    backlog_at_last_accept: int | None = None
    #: jasmind, RabbitMQ and Redis together; jasmind alone.
    cpu_ms_per_message: float | None = None
    jasmind_cpu_ms_per_message: float | None = None
    machine_busy_percent: float | None = None
    receipts_called_back: int = 0
    problems: list[str] = field(default_factory=list)


def wait_port(port: int, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            sys.exit(f"bench.smpp: {what} ended at start:\n{log.read_text()[-2000:]}")
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            sys.exit(f"bench.smpp: {what} did not listen on {port} in {START_SECONDS:.0f} s")
        time.sleep(0.2)


class Jasmin:
    """Redis, RabbitMQ (with its epmd) and jasmind, each a process group of its own."""

    def __init__(self, venv: Path, scratch: Path) -> None:
        daemon = venv / "bin" / "jasmind.py"
        if not daemon.exists():
            sys.exit(f"bench.smpp: no {daemon}: make a venv with `pip install jasmin==0.11.0`")
        for needed in ("redis-server", "epmd"):
            if shutil.which(needed) is None:
                sys.exit(f"bench.smpp: no {needed}: apt-get install redis-server rabbitmq-server")
        if not (RABBIT / "rabbitmq-server").exists():
            sys.exit("bench.smpp: no RabbitMQ: apt-get install rabbitmq-server")
        self.venv, self.scratch = venv, scratch
        scratch.mkdir(parents=True, exist_ok=True)
        names = ("redis", "amqp", "dist", "epmd", "smpp", "http", "jcli")
        self.port = {name: free_port() for name in names}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self.scratch / f"{name}.out"
        with log.open("wb") as out:
            self.processes[name] = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.scratch,
                start_new_session=True,
            )  # fmt: skip

    def start(self) -> None:
        port, scratch = self.port, self.scratch
        self._start("redis", ["redis-server", "--port", str(port["redis"]), "--bind",
                              "127.0.0.1", "--save", "", "--dir", str(scratch)])  # fmt: skip
        self._start("epmd", ["epmd", "-address", "127.0.0.1", "-port", str(port["epmd"])])
        self._start_rabbit()
        wait_port(port["redis"], "Redis", self.processes["redis"], scratch / "redis.out")
        wait_port(port["amqp"], "RabbitMQ", self.processes["rabbit"], scratch / "rabbit.out")
        self._start_jasmind()
        wait_port(port["jcli"], "jasmind", self.processes["jasmind"], scratch / "jasmind.out")
        wait_port(port["http"], "jasmind", self.processes["jasmind"], scratch / "jasmind.out")

    def _start_rabbit(self) -> None:
        home = self.scratch / "rabbit"
        for sub in ("mnesia", "log"):
            (home / sub).mkdir(parents=True)
        (home / "enabled_plugins").write_text("[].\n")
        (home / "rabbitmq.conf").write_text("")
        (home / "rabbitmq-env.conf").write_text("")
        env = os.environ | {
            "HOME": str(home), "RABBITMQ_NODENAME": "bench@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port["amqp"]),
            "RABBITMQ_DIST_PORT": str(self.port["dist"]),
            "ERL_EPMD_ADDRESS": "127.0.0.1", "ERL_EPMD_PORT": str(self.port["epmd"]),
            "RABBITMQ_MNESIA_BASE": str(home / "mnesia"), "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
        }  # fmt: skip
        self._start("rabbit", [str(RABBIT / "rabbitmq-server")], env)

    def _start_jasmind(self) -> None:
        root = self.scratch / "jasmin"
        etc = root / "etc" / "jasmin"
        for sub in (etc / "store", etc / "resource", root / "var" / "log" / "jasmin"):
            sub.mkdir(parents=True)
        [spec] = self.venv.glob("lib/python3*/site-packages/txamqp/specs/standard/"
                                "amqp0-9-1.stripped.xml")  # fmt: skip
        shutil.copy(spec, etc / "resource" / "amqp0-9-1.xml")
        port = self.port
        sections = {
            "smpp-server": ("127.0.0.1", port["smpp"]), "http-api": ("127.0.0.1", port["http"]),
            "jcli": ("127.0.0.1", port["jcli"]), "amqp-broker": ("127.0.0.1", port["amqp"]),
            "redis-client": ("127.0.0.1", port["redis"]),
        }  # fmt: skip
        config = "".join(
            f"[{name}]\n{'host' if name in ('amqp-broker', 'redis-client') else 'bind'} = "
            f"{host}\nport = {number}\n"
            for name, (host, number) in sections.items()
        )
        (etc / "jasmin.cfg").write_text(config)
        env = os.environ | {"ROOT_PATH": str(root)}
        argv = [str(self.venv / "bin" / "python"), str(self.venv / "bin" / "jasmind.py"),
                "-c", str(etc / "jasmin.cfg"), "--enable-dlr-thrower",
                "--enable-dlr-lookup"]  # fmt: skip
        self._start("jasmind", argv, env)

    @property
    def jasmind_pid(self) -> int:
        return self.processes["jasmind"].pid

    def cpu_seconds(self) -> tuple[float, float]:
        """(jasmind, RabbitMQ and Redis together), (jasmind alone)."""
        jasmind = tree_cpu_seconds(self.jasmind_pid) or 0.0
        others = sum(tree_cpu_seconds(self.processes[n].pid) or 0.0 for n in ("rabbit", "redis"))
        return jasmind + others, jasmind

    def jcli(self, commands: list[str]) -> str:
        """Run jCli commands (its default admin); what it answered."""
        said = []
        # jCli speaks only telnet, on 127.0.0.1 here
        with telnetlib.Telnet("127.0.0.1", self.port["jcli"], timeout=30) as console:  # noqa: S312
            console.read_until(b"Username: ", 30)
            console.write(b"jcliadmin\r\n")
            console.read_until(b"Password: ", 30)
            console.write(b"jclipwd\r\n")
            console.read_until(b"jcli : ", 30)
            for line in commands:
                console.write(line.encode() + b"\r\n")
                _, _, out = console.expect(PROMPTS, timeout=30)
                said.append(f"{line} | {out.decode(errors='replace').strip()}")
            console.write(b"quit\r\n")
        return "\n".join(said)

    def provision(self, sim: Simulator, throughput: int) -> None:
        """A user foo/bar; a connector to the simulator, started; a default route to it."""
        said = self.jcli([
            "group -a", "gid g1", "ok",
            "user -a", "username foo", "password bar", "gid g1", "uid u1", "ok",
            "smppccm -a", "cid upstream", "host 127.0.0.1", f"port {sim.port}",
            f"username {SYSTEM_ID}", f"password {SECRET}", f"submit_throughput {throughput}",
            "ok",
            "smppccm -1 upstream",
            "mtrouter -a", "type DefaultRoute", "connector smppc(upstream)", "rate 0.00", "ok",
        ])  # fmt: skip
        (self.scratch / "jcli.out").write_text(said)
        if re.search(r"error|unknown|invalid|not found", said, re.IGNORECASE):
            sys.exit(f"bench.smpp: jCli did not take Jasmin's setup:\n{said}")

    def stop(self) -> None:
        for name in ("jasmind", "rabbit", "redis", "epmd"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            except ProcessLookupError:
                pass


async def receipts_sink(port: int, seen: list[int]) -> web.AppRunner:
    """An aiohttp app on 127.0.0.1:`port` counting Jasmin's receipt callbacks in `seen[0]`."""

    async def sink(_: web.Request) -> web.Response:
        seen[0] += 1
        return web.Response(text="ACK/Jasmin")

    app = web.Application()
    app.router.add_route("*", "/dlr", sink)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def send_all(
    http: str, sink: str, count: int, concurrency: int
) -> tuple[float, float, int, list[str]]:
    """`count` GET /send; (first start, last end, accepted, refusals)."""
    todo = iter(range(count))
    accepted, refusals = 0, []
    first = last = time.monotonic()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def worker() -> None:
            nonlocal accepted, last
            for n in todo:
                params = {"username": "foo", "password": "bar", "to": NUMBER,
                          "content": f"jasmin {n}", "dlr": "yes", "dlr-level": "2",
                          "dlr-method": "GET", "dlr-url": sink}  # fmt: skip
                async with client.get(http + "/send", params=params) as answer:
                    body = await answer.text()
                last = max(last, time.monotonic())
                if answer.status == 200 and body.startswith("Success"):
                    accepted += 1
                else:
                    refusals.append(f"{answer.status} {body[:80]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return first, last, accepted, refusals


async def run_jasmin(
    venv: Path, scratch: Path, sim: Simulator, messages: int, concurrency: int,
    throughput: int, within: float,
) -> JasminPhase:  # fmt: skip
    """Start Jasmin, bind it to `sim` (nothing else bound), send `messages`, measure, stop."""
    jasmin = Jasmin(venv, scratch)
    seen = [0]
    sink_port = free_port()
    try:
        print("bench.smpp: Jasmin 0.11.0 (Redis, RabbitMQ, jasmind) starting ...", flush=True)
        jasmin.start()
        async with aiohttp.ClientSession() as session:
            binds_before = (await sim.get(session, "/binds"))["ok"]
        jasmin.provision(sim, throughput)
        await wait_bind(sim, binds_before, "Jasmin's connector")
        runner = await receipts_sink(sink_port, seen)
        try:
            print(f"bench.smpp: Jasmin, {messages} messages ...", flush=True)
            return await _measure(jasmin, sim, messages, concurrency, within, sink_port, seen)
        finally:
            await runner.cleanup()
    finally:
        jasmin.stop()


async def _measure(
    jasmin: Jasmin, sim: Simulator, messages: int, concurrency: int, within: float,
    sink_port: int, seen: list[int],
) -> JasminPhase:  # fmt: skip
    http = f"http://127.0.0.1:{jasmin.port['http']}"
    sink = f"http://127.0.0.1:{sink_port}/dlr"
    async with aiohttp.ClientSession() as session:
        sampler = Sampler(sim, session)
        start = await sampler.count()
        cpu_before, busy_before = jasmin.cpu_seconds(), machine_busy_seconds()
        began = time.monotonic()
        sampling = asyncio.ensure_future(sampler.until(start + messages, within))
        first, last, accepted, refusals = await send_all(http, sink, messages, concurrency)
        if accepted < messages:
            sampling.cancel()
            sampling = asyncio.ensure_future(sampler.until(start + accepted, within))
        done = await sampling
        cpu_after, busy_after = jasmin.cpu_seconds(), machine_busy_seconds()
        wall = time.monotonic() - began
    phase = JasminPhase(
        messages, accepted, round(accepted / (last - first), 1),
        round((sampler.at(last) - sampler.at(first)) / (last - first), 1), 0.0,
        backlog_at_last_accept=start + accepted - sampler.at(last),
    )  # fmt: skip
    phase.ratio = round(phase.submits_during_load_per_s / max(phase.accepted_per_s, 1e-9), 3)
    if accepted:
        phase.cpu_ms_per_message = round((cpu_after[0] - cpu_before[0]) * 1000 / accepted, 3)
        phase.jasmind_cpu_ms_per_message = round(
            (cpu_after[1] - cpu_before[1]) * 1000 / accepted, 3
        )
    if busy_before is not None and busy_after is not None:
        cores = os.cpu_count() or 1
        phase.machine_busy_percent = round((busy_after - busy_before) * 100 / (cores * wall), 1)
    if refusals:
        phase.problems.append(f"Jasmin refused {len(refusals)} sends, e.g. {refusals[0]}")
    if done is None:
        phase.problems.append(f"Jasmin: not every submit_sm reached the simulator in {within} s")
    else:
        phase.submits_per_s = round(accepted / (done - first), 1)
        phase.drain_ms = round(max(0.0, done - last) * 1000, 1)
    deadline = time.monotonic() + 60
    while seen[0] < accepted and time.monotonic() < deadline:  # noqa: ASYNC110 (a count)
        await asyncio.sleep(0.1)
    phase.receipts_called_back = seen[0]
    return phase
