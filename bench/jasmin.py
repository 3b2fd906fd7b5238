"""Jasmin 0.11.0 on free 127.0.0.1 ports: the anchor of bench/smpp (bench/smpp/jasmin.py) and
the gateway between smsgw and the SMSC simulator in tests/test_link_jasmin.py.

What runs (test-peers.md §2.3), each a process group of its own in a scratch directory:
Redis and RabbitMQ from apt (`make brokers`), RabbitMQ with an `epmd` of its own, and
`jasmind.py` of a venv holding `jasmin==0.11.0` (`default_venv()`: .venv-jasmin of the
checkout, made by `make test`; SMSGW_JASMIN_VENV overrides it) with its receipt thrower and
lookup in the same process. `provision` sets Jasmin up through jCli: a user (USER, PASSWORD)
who may bind to Jasmin's SMPP server and send through its HTTP API, an SMPP client connector
bound to an SMSC and a default route to it (and with `mo_to_user`, a default MO route to
that user's SMPP server sessions). `stop` ends every process started, whatever `start` got to.

The ports are picked free (`free_port`: below the kernel's ephemeral range, where no
client socket lands) before the services bind them, and another process (a test worker's
server, a benchmark) may take one meanwhile: a service's start waits for its own process to
listen on each of its ports, and starts it again on fresh ones when another process holds one
(`PortTaken`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import free_port, held_sockets, listening_inodes, socket_inodes, tree_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
RABBIT = Path("/usr/lib/rabbitmq/bin")
USER, PASSWORD = "foo", "bar"
PROMPTS = [re.compile(rb"jcli : $"), re.compile(rb"> $")]
START_SECONDS = 90.0
#: jasmind.py (`python -c OWN_LOCK jasmind.py ARGS...`) with its lock file at $JASMIND_LOCK
#: instead of /tmp/jasmind, which it holds while it runs: with that one, a second Jasmin on
#: the machine exits at once ("Lock not acquired"), and a killed one can leave it behind.
OWN_LOCK = """
import lockfile, os, runpy, sys
FileLock = lockfile.FileLock
lockfile.FileLock = lambda path, *args, **kw: FileLock(os.environ["JASMIND_LOCK"], *args, **kw)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class JasminError(RuntimeError):
    """Jasmin could not be started or set up (what is missing, or what a log said)."""


def default_venv() -> Path:
    """The venv holding jasmin==0.11.0: SMSGW_JASMIN_VENV, or .venv-jasmin (`make test`)."""
    return Path(os.environ.get("SMSGW_JASMIN_VENV") or ROOT / ".venv-jasmin")


#: what a process says when the port it was given is taken: Twisted's CannotListenError and
#: Redis; RabbitMQ (its AMQP port; its distribution port); epmd (with -d: else it just ends)
IN_USE = re.compile(
    r"address already in use|eaddrinuse|dist_port_already_used|already a epmd running",
    re.IGNORECASE,
)
ATTEMPTS = 3
#: the ports each service listens on, by the name of its process
SERVICES = {
    "epmd": ("epmd",), "redis": ("redis",), "rabbit": ("dist", "amqp"),
    "jasmind": ("router-pb", "connectors-pb", "smpp-pb", "smpp", "http", "jcli"),
}  # fmt: skip


class PortTaken(JasminError):
    """Another process took a port between `free_port` picking it and the service binding it
    (a test worker, a benchmark's server): the service is started again on a fresh one."""


def owners(inodes: set[int]) -> str:
    """Which processes hold these sockets (pid and command line), for the error."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        if held_sockets(int(proc.name)) & inodes:
            with contextlib.suppress(OSError):
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                found.append(f"pid {proc.name} ({command.decode(errors='replace')[:200]})")
    return "; ".join(found) or "a process gone since"


def wait_listening(
    ports: Sequence[int], what: str, process: subprocess.Popen[bytes], log: Path, deadline: float
) -> None:
    """Until `process` (or a descendant) listens on each of `ports`. PortTaken when another
    process listens on one of them, or the log says a port was in use (jasmind goes on without
    the service); JasminError when the process ends or the `deadline` (time.monotonic) passes.

    The log is read before the listeners, and they before the process's sockets: a service
    that says a port was in use has said so after its try to bind, so a listener holding the
    port then is seen and named, whichever of the ports it holds (the wait once named another
    port, one not listened on yet); and a listener of the service's own, bound between the
    reads, is among its sockets."""
    while True:
        ended = process.poll() is not None
        said = (log.read_bytes() if log.exists() else b"").decode(errors="replace")
        listening = {port: listening_inodes(port) for port in ports}
        mine = socket_inodes(process.pid)  # after them: its own bound meanwhile are in it
        waiting = {port: found for port, found in listening.items() if not found & mine}
        if not waiting:
            return
        unbound = ", ".join(map(str, waiting))
        held = [
            f"another process listens on {port}: {owners(listeners)}"
            for port, listeners in waiting.items()
            if listeners
        ]
        if held:
            raise PortTaken(f"{what}: {'; '.join(held)}")
        if IN_USE.search(said):
            raise PortTaken(f"{what}: a port was in use (not listened on: {unbound}):\n"
                            f"{said[-2000:]}")  # fmt: skip
        if ended:
            raise JasminError(f"{what} ended at start:\n{said[-2000:]}")
        if time.monotonic() > deadline:
            raise JasminError(f"{what} did not listen on {unbound} in {START_SECONDS:.0f} s")
        time.sleep(0.2)


class Jasmin:
    """Redis, RabbitMQ (with its epmd) and jasmind; `port` maps each service to its port
    ("smpp": Jasmin's SMPP server, "http": its HTTP API, "jcli": its console)."""

    def __init__(self, venv: Path, scratch: Path) -> None:
        daemon = venv / "bin" / "jasmind.py"
        if not daemon.exists():
            raise JasminError(
                f"no {daemon}: make a venv with `pip install jasmin==0.11.0` (`make test` "
                f"makes {ROOT / '.venv-jasmin'})"
            )
        for needed in ("redis-server", "epmd"):
            if shutil.which(needed) is None:
                raise JasminError(
                    f"no {needed}: `make brokers` (apt: redis-server rabbitmq-server)"
                )
        if not (RABBIT / "rabbitmq-server").exists():
            raise JasminError("no RabbitMQ: `make brokers` (apt: redis-server rabbitmq-server)")
        self.venv, self.scratch = venv, scratch
        scratch.mkdir(parents=True, exist_ok=True)
        self.port: dict[str, int] = {}
        for port in (port for ports in SERVICES.values() for port in ports):
            self.port[port] = free_port(self.port.values())
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        #: each time a port was taken before its service bound it (the service was started
        #: again on a fresh one)
        self.taken: list[PortTaken] = []

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self.scratch / f"{name}.out"
        with log.open("wb") as out:
            self.processes[name] = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.scratch,
                start_new_session=True,
            )  # fmt: skip

    def _up(self, name: str, what: str, launch: Callable[[], None]) -> None:
        """Launch a service and wait for each of its ports; when another process took one
        of them meanwhile, end it and launch it again on fresh ports (ATTEMPTS times), its
        log of the try before kept as NAME.TRY.out."""
        for attempt in range(1, ATTEMPTS + 1):
            launch()
            log = self.scratch / f"{name}.out"
            deadline = time.monotonic() + START_SECONDS
            ports = [self.port[port] for port in SERVICES[name]]
            try:
                wait_listening(ports, what, self.processes[name], log, deadline)
                return
            except PortTaken as taken:
                self._end(name)
                if attempt == ATTEMPTS:
                    raise
                self.taken.append(taken)
                log.rename(self.scratch / f"{name}.{attempt}.out")
                for port in SERVICES[name]:
                    self.port[port] = free_port(self.port.values())

    def start(self) -> None:
        port, scratch = self.port, self.scratch
        # epmd listening before RabbitMQ looks for it: else the Erlang VM starts an
        # `epmd -daemon` of its own, which would outlive `stop`
        self._up(
            "epmd",
            "epmd",
            lambda: self._start(
                "epmd", ["epmd", "-d", "-address", "127.0.0.1", "-port", str(port["epmd"])]
            ),
        )
        self._up("redis", "Redis", lambda: self._start(
            "redis", ["redis-server", "--port", str(port["redis"]), "--bind", "127.0.0.1",
                      "--save", "", "--dir", str(scratch)]))  # fmt: skip
        self._up("rabbit", "RabbitMQ", self._start_rabbit)
        self._up("jasmind", "jasmind", self._start_jasmind)

    def _start_rabbit(self) -> None:
        home = self.scratch / "rabbit"
        shutil.rmtree(home, ignore_errors=True)  # a try before's
        for sub in ("mnesia", "log"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        (home / "enabled_plugins").write_text("[].\n")
        (home / "rabbitmq.conf").write_text("")
        (home / "rabbitmq-env.conf").write_text("")
        env = os.environ | {
            "HOME": str(home), "RABBITMQ_NODENAME": "jasmin@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port["amqp"]),
            "RABBITMQ_DIST_PORT": str(self.port["dist"]),
            "ERL_EPMD_ADDRESS": "127.0.0.1", "ERL_EPMD_PORT": str(self.port["epmd"]),
            "RABBITMQ_MNESIA_BASE": str(home / "mnesia"), "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(home / "rabbitmq-env.conf"),
            # its distribution port too on 127.0.0.1 only (else on every interface)
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }  # fmt: skip
        self._start("rabbit", [str(RABBIT / "rabbitmq-server")], env)

    @property
    def root(self) -> Path:
        """Jasmin's ROOT_PATH: its configuration, and its logs in var/log/jasmin."""
        return self.scratch / "jasmin"

    def _start_jasmind(self) -> None:
        etc = self.root / "etc" / "jasmin"
        for sub in (etc / "store", etc / "resource", self.root / "var" / "log" / "jasmin"):
            sub.mkdir(parents=True, exist_ok=True)
        [spec] = self.venv.glob("lib/python3*/site-packages/txamqp/specs/standard/"
                                "amqp0-9-1.stripped.xml")  # fmt: skip
        shutil.copy(spec, etc / "resource" / "amqp0-9-1.xml")
        port = self.port
        # Every service on 127.0.0.1 and a port of its own: its Perspective Broker services
        # (router, client-management, smpp-server-pb) would listen on 0.0.0.0 and on fixed
        # ports, and a second Jasmin (another test worker, a benchmark) would not start.
        sections = {
            "smpp-server": ("127.0.0.1", port["smpp"]), "http-api": ("127.0.0.1", port["http"]),
            "jcli": ("127.0.0.1", port["jcli"]), "amqp-broker": ("127.0.0.1", port["amqp"]),
            "redis-client": ("127.0.0.1", port["redis"]),
            "router": ("127.0.0.1", port["router-pb"]),
            "client-management": ("127.0.0.1", port["connectors-pb"]),
            "smpp-server-pb": ("127.0.0.1", port["smpp-pb"]),
        }  # fmt: skip
        config = "".join(
            f"[{name}]\n{'host' if name in ('amqp-broker', 'redis-client') else 'bind'} = "
            f"{host}\nport = {number}\n"
            for name, (host, number) in sections.items()
        )
        (etc / "jasmin.cfg").write_text(config)
        # a lock of each try's own: a jasmind ended after a port was taken may leave its own
        lock = self.root / f"lock{len(self.taken)}"
        env = os.environ | {"ROOT_PATH": str(self.root), "JASMIND_LOCK": str(lock)}
        argv = [str(self.venv / "bin" / "python"), "-c", OWN_LOCK,
                str(self.venv / "bin" / "jasmind.py"), "-c", str(etc / "jasmin.cfg"),
                "--enable-dlr-thrower", "--enable-dlr-lookup"]  # fmt: skip
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:  # jCli is a telnet console; telnetlib left the standard library in 3.13
                import telnetlib
            except ImportError as missing:
                raise JasminError("jCli needs telnetlib (Python 3.12 at most)") from missing
        said = []
        deadline = time.monotonic() + START_SECONDS
        while True:
            # jCli speaks only telnet, on 127.0.0.1 here
            console = telnetlib.Telnet("127.0.0.1", self.port["jcli"], timeout=30)  # noqa: S312
            try:
                # jCli 0.11.0 asks for the user name with no "Username: " prompt (waiting for
                # one cost the whole timeout): it says this, then takes the first line as the
                # name
                console.read_until(b"Authentication required.", 30)
                console.write(b"jcliadmin\r\n")
                console.read_until(b"Password: ", 30)
                console.write(b"jclipwd\r\n")
                console.read_until(b"jcli : ", 30)
                break
            except EOFError:  # seen once (bench/smpp), cause unknown: no command sent yet
                console.close()
                if time.monotonic() > deadline:
                    raise JasminError("jCli closed the console before its prompt") from None
                time.sleep(1)
        with console:
            for line in commands:
                console.write(line.encode() + b"\r\n")
                _, _, out = console.expect(PROMPTS, timeout=30)
                said.append(f"{line} | {out.decode(errors='replace').strip()}")
            console.write(b"quit\r\n")
        return "\n".join(said)

    def provision(
        self, smsc_port: int, system_id: str, password: str, throughput: int,
        mo_to_user: bool = False,
    ) -> None:  # fmt: skip
        """The user USER/PASSWORD; a connector to the SMSC on 127.0.0.1:`smsc_port` (bound
        as `system_id`, at most `throughput` submit_sm a second), started; a default route to
        it; with `mo_to_user`, a default MO route to the user's SMPP server sessions."""
        commands = [
            "group -a", "gid g1", "ok",
            "user -a", f"username {USER}", f"password {PASSWORD}", "gid g1", "uid u1", "ok",
            "smppccm -a", "cid upstream", "host 127.0.0.1", f"port {smsc_port}",
            f"username {system_id}", f"password {password}",
            f"submit_throughput {throughput}", "ok",
            "smppccm -1 upstream",
            "mtrouter -a", "type DefaultRoute", "connector smppc(upstream)", "rate 0.00", "ok",
        ]  # fmt: skip
        if mo_to_user:
            commands += ["morouter -a", "type DefaultRoute", f"connector smpps({USER})", "ok"]
        said = self.jcli(commands)
        (self.scratch / "jcli.out").write_text(said)
        if re.search(r"error|unknown|invalid|not found", said, re.IGNORECASE):
            raise JasminError(f"jCli did not take Jasmin's setup:\n{said}")

    def stop(self) -> None:
        """End every process started, whatever `start` got to."""
        for name in ("jasmind", "rabbit", "redis", "epmd"):
            self._end(name)

    def _end(self, name: str) -> None:
        """SIGTERM to the process group (SIGKILL after 30 s), then SIGKILL to whatever its
        leader left behind in it."""
        process = self.processes.pop(name, None)
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 10  # and the rest of its group (an Erlang VM) gone
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
