"""`smsgw serve` with SMSGW_WORKERS=2, end to end: real server processes on one port.

The kernel spreads new TCP connections across the processes (SO_REUSEPORT), so every request
here goes over a fresh connection and may land on either process; which one answered is never
asked. A test that makes ten such requests therefore reaches both processes but for a chance
of 2 in 1024, and a phone's events must cross between them (events/shared_hub.py) whenever
the request landed on the process not holding the phone's stream.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.clients import TLS
from tests.conftest import API, Account, create_account, free_port, make_settings
from tests.fakes.phone import SimulatedPhone

MOBILE = "/api/mobile/v1"
NUMBER = "+12025550100"
#: Requests over fresh connections per check: all on one process only 2 times in 1024.
SPREAD = 10
#: No keep-alive: each request opens a new connection, which the kernel hands to either process.
FRESH = httpx.Limits(max_keepalive_connections=0)


# -- processes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """A process as /proc shows it; the start time tells a reused pid apart."""

    pid: int
    ppid: int
    state: str
    started: int

    @property
    def cmdline(self) -> str:
        try:
            return Path(f"/proc/{self.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return ""

    @property
    def alive(self) -> bool:
        now = read_proc(self.pid)
        return now is not None and now.started == self.started and now.state != "Z"


def read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name, in parentheses, may hold spaces
    return Proc(pid, int(fields[1]), fields[0], int(fields[19]))


def children_of(pid: int) -> list[Proc]:
    found = (
        read_proc(int(entry.name)) for entry in Path("/proc").iterdir() if entry.name.isdigit()
    )
    return [proc for proc in found if proc is not None and proc.ppid == pid and proc.state != "Z"]


def listeners(port: int) -> int:
    """How many sockets listen on 127.0.0.1:`port` (one per server process)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if row[1] == wanted and row[3] == "0A")


@dataclass
class Serve:
    """A running `python -m smsgw serve` (the supervisor) and all it printed."""

    process: subprocess.Popen[str]
    port: int
    data_dir: Path
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None
    seen: dict[int, Proc] = field(default_factory=dict)  # every child it was seen with

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return "".join(self.lines)

    def children(self) -> list[Proc]:
        current = children_of(self.process.pid)
        self.seen.update((proc.pid, proc) for proc in current)
        return current

    def nodes(self) -> list[Proc]:
        """Its server processes (not multiprocessing's resource tracker)."""
        return [proc for proc in self.children() if "spawn_main" in proc.cmdline]

    def create_user(self, login: str, password: str = "correct horse battery") -> Account:
        create_account(make_settings(self.data_dir), login, password)
        return Account(login, password)

    def client(self, account: Account | None = None, prefix: str = API) -> httpx.AsyncClient:
        auth = (account.login, account.password) if account else None
        return httpx.AsyncClient(
            base_url=self.url + prefix, auth=auth, timeout=60, limits=FRESH, verify=TLS
        )

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        if self.reader is not None:
            self.reader.join(timeout=5)
        return code

    def cleanup(self) -> None:
        """Stop it if still running (SIGINT, as Ctrl-C) and leave no process behind."""
        self.children()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for proc in self.seen.values():
            if proc.alive:
                os.kill(proc.pid, signal.SIGKILL)
        if self.reader is not None:
            self.reader.join(timeout=5)  # EOF once every process that shares its stdout is gone
        if self.process.stdout is not None and (self.reader is None or not self.reader.is_alive()):
            self.process.stdout.close()


def start_serve(
    data_dir: Path, port: int | None = None, env: dict[str, str] | None = None
) -> Serve:
    port = port or free_port()
    environ = os.environ | {
        "SMSGW_DATA_DIR": str(data_dir),
        "SMSGW_HOST": "127.0.0.1",
        "SMSGW_PORT": str(port),
        "SMSGW_WORKERS": "2",
        "SMSGW_BOOTSTRAP_ACCOUNT": "false",
        "SMSGW_LOG_LEVEL": "warning",
        # The periodic worker wakes phones too: kept out of the way, so that only the
        # events crossing between processes can wake a phone within a test.
        "SMSGW_WORKER_INTERVAL_SECONDS": "60",
        "SMSGW_WORKER_STALL_SECONDS": "120",
        "SMSGW_SSE_KEEPALIVE_SECONDS": "1",
    }
    database_url = make_settings(data_dir).database_url  # the test's PostgreSQL, if any
    if database_url is not None:
        environ["SMSGW_DATABASE_URL"] = database_url
    process = subprocess.Popen(
        [sys.executable, "-m", "smsgw", "serve"],
        env=environ | (env or {}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    serve = Serve(process, port, data_dir)
    assert process.stdout is not None
    serve.reader = threading.Thread(
        target=_collect, args=(process.stdout, serve.lines), daemon=True
    )
    serve.reader.start()
    return serve


def _collect(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


def wait_until_serving(serve: Serve, within: float = 120) -> None:
    """Both processes listen, and requests over fresh connections are answered."""
    deadline = time.monotonic() + within
    while listeners(serve.port) < 2:
        if serve.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"smsgw did not start:\n{serve.output()}")
        time.sleep(0.05)
    serve.children()
    # A connection queued at a process still starting waits for it: once SPREAD of them are
    # answered, both processes most likely run their application (and its bus).
    with httpx.Client(base_url=serve.url, timeout=60, limits=FRESH, verify=TLS) as client:
        for _ in range(SPREAD):
            assert client.get("/health/startup").status_code == 200, serve.output()


@contextmanager
def serving(data_dir: Path) -> Iterator[Serve]:
    serve = start_serve(data_dir)
    try:
        wait_until_serving(serve)
        yield serve
    finally:
        serve.cleanup()


# -- async helpers --------------------------------------------------------------------------


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario(), 180)

    asyncio.run(bounded())


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 30, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {within} s")
        await asyncio.sleep(0.05)


async def holds(value: Callable[[], bool]) -> bool:
    return value()


def enqueued_events(phone: SimulatedPhone) -> int:
    return sum(1 for event, _ in phone.events if event == "MessageEnqueued")


async def woken_since(phone: SimulatedPhone, count: int) -> bool:
    """A MessageEnqueued reached the phone after the first `count` of them."""
    return enqueued_events(phone) > count


async def send(api: httpx.AsyncClient, text: str, **extra: Any) -> str:
    body = {"phoneNumbers": [NUMBER], "textMessage": {"text": text}} | extra
    response = await api.post("/messages", json=body)
    assert response.status_code == 200, response.text
    message_id: str = response.json()["id"]
    return message_id


async def reaches(api: httpx.AsyncClient, message_id: str, state: str, within: float) -> None:
    async def check() -> bool:
        response = await api.get(f"/messages/{message_id}")
        return bool(response.json()["state"] == state)

    await eventually(check, within, f"message {message_id} {state}")


async def connected_answers(api: httpx.AsyncClient, device_id: str) -> list[bool]:
    """`connected` of the phone, as SPREAD answers over fresh connections give it."""
    answers = []
    for _ in range(SPREAD):
        response = await api.get("/devices")
        assert response.status_code == 200, response.text
        [device] = [d for d in response.json() if d["id"] == device_id]
        answers.append(bool(device["connected"]))
    return answers


async def start_phone(serve: Serve, account: Account, **options: Any) -> SimulatedPhone:
    """A phone whose stream is open, known to every process, done with its start-up pulls.

    Its own timer never pulls: only an event on its stream makes it pull (with
    `pull_on_enqueued=False`, not even that: only the test's own `pull()` calls).
    """
    phone = SimulatedPhone(
        serve.url + MOBILE, login=(account.login, account.password), pull_interval=1e9, **options
    )
    await phone.start()
    assert phone.credentials is not None
    device_id = phone.credentials.id
    async with serve.client(account) as api:

        async def everywhere() -> bool:
            return all(await connected_answers(api, device_id))

        await eventually(
            lambda: holds(lambda: phone.sse_opens > 0 and phone.settled()), what="phone started"
        )
        await eventually(everywhere, what="the phone connected in every answer of /devices")
    return phone


# -- the phone's events cross between processes ---------------------------------------------


def test_every_message_wakes_the_phone_whichever_process_accepts_it(tmp_path: Path) -> None:
    with serving(tmp_path / "data") as serve:
        account = serve.create_user("alice")

        async def scenario() -> None:
            phone = await start_phone(serve, account)
            try:
                async with serve.client(account) as api:
                    sent = []
                    for n in range(SPREAD):
                        message_id = await send(api, f"message {n}")
                        await reaches(api, message_id, "Delivered", within=30)
                        sent.append(message_id)
                await asyncio.sleep(0.3)  # a second send of any would show by now
                assert sorted(phone.sent) == sorted((message_id, NUMBER) for message_id in sent)
            finally:
                await phone.stop()

        run(scenario)


def test_every_process_sees_the_phone_connected_then_disconnected(tmp_path: Path) -> None:
    with serving(tmp_path / "data") as serve:
        account = serve.create_user("alice")

        async def scenario() -> None:
            phone = await start_phone(serve, account)
            assert phone.credentials is not None
            device_id = phone.credentials.id
            async with serve.client(account) as api:
                try:
                    await asyncio.sleep(2.5)  # past a heartbeat: still connected everywhere
                    assert await connected_answers(api, device_id) == [True] * SPREAD
                finally:
                    await phone.stop()

                async def gone_everywhere() -> bool:
                    return not any(await connected_answers(api, device_id))

                # Well before the others would forget a silent process's phones (7 s): the
                # process that held the stream says so at once.
                await eventually(gone_everywhere, within=4, what="disconnected everywhere")
                assert await connected_answers(api, device_id) == [False] * SPREAD

        run(scenario)


def test_a_cancel_reaches_the_phone_whichever_process_accepts_it(tmp_path: Path) -> None:
    with serving(tmp_path / "data") as serve:
        account = serve.create_user("alice")

        async def scenario() -> None:
            # It holds what it takes, and pulls only when the test says so: the worker's round
            # may wake it a second time for a pinned message not yet taken, and a second pull
            # would re-report the held message as Pending (Processed: too late to cancel).
            phone = await start_phone(serve, account, paused=True, pull_on_enqueued=False)
            assert phone.credentials is not None
            try:
                async with serve.client(account) as api:
                    for n in range(6):
                        woken = enqueued_events(phone)
                        message_id = await send(api, f"held {n}", deviceId=phone.credentials.id)
                        await eventually(
                            functools.partial(woken_since, phone, woken),
                            within=30,
                            what=f"the phone woken for {message_id}",
                        )
                        await phone.pull()
                        assert message_id in phone.messages
                        response = await api.delete(f"/messages/{message_id}")
                        assert response.json().get("state") == "Cancelling", response.text
                        await reaches(api, message_id, "Cancelled", within=30)
                        assert ("MessageCancelled", {"messageId": message_id}) in phone.events
                assert phone.sent == []
            finally:
                await phone.stop()

        run(scenario)


def test_health_answers_from_every_process(tmp_path: Path) -> None:
    with (
        serving(tmp_path / "data") as serve,
        httpx.Client(base_url=serve.url, timeout=60, limits=FRESH, verify=TLS) as client,
    ):
        for path in ("/health", "/health/live", API + "/health"):
            answers = [client.get(path) for _ in range(SPREAD)]
            assert [r.status_code for r in answers] == [200] * SPREAD, answers[0].text
            assert {r.json()["status"] for r in answers} == {"pass"}


# -- the supervisor -------------------------------------------------------------------------


def test_the_first_account_is_made_once_and_works_in_every_process(tmp_path: Path) -> None:
    serve = start_serve(tmp_path / "data", env={"SMSGW_BOOTSTRAP_ACCOUNT": "true"})
    try:
        wait_until_serving(serve)
        password = re.search(r"password: (\S+)", serve.output())
        assert password, serve.output()
        auth = ("admin", password.group(1))
        with httpx.Client(
            base_url=serve.url + API, auth=auth, timeout=60, limits=FRESH, verify=TLS
        ) as api:
            answers = [api.get("/messages") for _ in range(SPREAD)]
        assert [r.status_code for r in answers] == [200] * SPREAD
        serve.process.send_signal(signal.SIGINT)
        assert serve.wait() == 0
    finally:
        serve.cleanup()
    output = serve.output()
    assert output.count("created the first account") == 1, output
    assert output.count("password:") == 1, output
    assert output.count("smsgw listening on") == 1, output
    assert "(2 processes)" in output


def test_sigterm_stops_every_process_and_exits_0(tmp_path: Path) -> None:
    with serving(tmp_path / "data") as serve:
        children = serve.children()
        assert len(serve.nodes()) == 2, [proc.cmdline for proc in children]
        serve.process.send_signal(signal.SIGTERM)
        assert serve.wait() == 0, serve.output()
        wait_gone(children)
        assert listeners(serve.port) == 0
        assert "Traceback" not in serve.output(), serve.output()


def test_a_process_that_dies_stops_the_other_and_the_server_exits_1(tmp_path: Path) -> None:
    with serving(tmp_path / "data") as serve:
        children = serve.children()
        killed, other = serve.nodes()
        os.kill(killed.pid, signal.SIGKILL)
        assert serve.wait() == 1, serve.output()
        assert not other.alive  # stopped by the supervisor before it exited
        wait_gone(children)
        assert listeners(serve.port) == 0
        assert f"exited ({-signal.SIGKILL})" in serve.output(), serve.output()


@pytest.mark.parametrize("shareable", [False, True], ids=["plain", "reuseport"])
def test_a_taken_port_makes_serve_exit_non_zero(tmp_path: Path, shareable: bool) -> None:
    """Also when the listener would share it (another smsgw of this user, say): the kernel
    would spread connections across two unrelated servers."""
    port = free_port()
    with socket.socket() as taken:
        if shareable:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        serve = start_serve(tmp_path / "data", port=port)
        try:
            deadline = time.monotonic() + 120
            while serve.process.poll() is None and time.monotonic() < deadline:
                serve.children()  # remembered, to check below that none is left
                time.sleep(0.02)
            assert serve.wait(timeout=1) != 0, serve.output()
            wait_gone(list(serve.seen.values()))
        finally:
            serve.cleanup()
        assert "Address already in use" in serve.output(), serve.output()


def wait_gone(procs: list[Proc], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while any(proc.alive for proc in procs):
        if time.monotonic() > deadline:
            left = [proc.cmdline for proc in procs if proc.alive]
            raise AssertionError(f"processes left behind: {left}")
        time.sleep(0.05)
