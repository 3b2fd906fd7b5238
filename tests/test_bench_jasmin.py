"""bench/jasmin.py's wait for a service's port, with plain Python processes in place of
Jasmin's services: it is the service's own listening socket that ends the wait, not any
socket that answers on the port (tests/test_link_jasmin.py starts the real services with
ports taken)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from bench.common import free_port, port_range
from bench.fleet.server import listens_on
from bench.jasmin import JasminError, PortTaken, wait_listening

pytestmark = pytest.mark.one_engine("no database")  # conftest.py

LISTENS = """
import socket, sys, time
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("listening", flush=True)
time.sleep(600)
"""
LISTENS_ON_ALL = """
import socket, sys, time
servers = [socket.create_server(("127.0.0.1", int(port))) for port in sys.argv[1:]]
print("listening", flush=True)
time.sleep(600)
"""
#: the listener in a child, as RabbitMQ's Erlang VM under its start script
CHILD_LISTENS = f"""
import subprocess, sys
subprocess.run([sys.executable, "-c", {LISTENS!r}, sys.argv[1]])
"""
SAYS = """
import sys, time
print(sys.argv[2], flush=True)
time.sleep(600)
"""
ENDS = "print('gave up')"


def soon() -> float:
    return time.monotonic() + 60


@contextmanager
def process(code: str, *args: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        started = subprocess.Popen(
            [sys.executable, "-c", code, *args], stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield started
    finally:
        subprocess.run(["pkill", "-KILL", "-s", str(started.pid)], check=False)
        started.wait(timeout=30)


@pytest.mark.parametrize("code", [LISTENS, CHILD_LISTENS], ids=["itself", "its child"])
def test_the_wait_ends_when_the_process_or_a_descendant_listens(code: str, tmp_path: Path) -> None:
    port = free_port()
    with process(code, str(port), log=tmp_path / "out") as started:
        wait_listening([port], "service", started, tmp_path / "out", soon())
        assert started.poll() is None


def test_another_process_listening_on_the_port_is_a_port_taken(tmp_path: Path) -> None:
    """What the old wait (a connect to the port) took for the service: jasmind goes on
    without a service whose port is taken, and the wait connected to the squatter."""
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        port = squatter.getsockname()[1]
        with (
            process(SAYS, "", "starting", log=tmp_path / "out") as started,
            pytest.raises(PortTaken, match=f"another process listens on {port}"),
        ):
            wait_listening([port], "service", started, tmp_path / "out", soon())


@pytest.mark.parametrize(
    "said",
    [
        "Cannot start SMPPServer: Couldn't listen on 127.0.0.1:1: [Errno 98] Address already "
        "in use.",
        "Could not create server TCP listening socket 127.0.0.1:1: bind: Address already in use",
        "{failed_to_start_child,prelaunch,{dist_port_already_used,1,not_erlang}}",
        "there is already a epmd running at port 1",
    ],
    ids=["jasmind", "redis", "rabbitmq", "epmd"],
)
def test_a_log_saying_the_port_was_in_use_is_a_port_taken(said: str, tmp_path: Path) -> None:
    """A port held by a connected socket has no listener to see: the service says it."""
    port = free_port()
    with (
        process(SAYS, str(port), said, log=tmp_path / "out") as started,
        pytest.raises(PortTaken, match=f"was in use \\(not listened on: {port}\\)"),
    ):
        wait_listening([port], "service", started, tmp_path / "out", soon())


def test_the_port_another_process_listens_on_is_named_whichever_port_is_waited_on_first(
    tmp_path: Path,
) -> None:
    """jasmind says "Address already in use" for its SMPP server while its first port is
    not listened on yet: the error names the SMPP server's port and its squatter (the wait
    once checked the ports one by one and blamed the first, as a CI run showed)."""
    first = free_port()
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        taken = squatter.getsockname()[1]
        said = (
            f"Cannot start SMPPServer: Couldn't listen on 127.0.0.1:{taken}: Address already in use"
        )
        with (
            process(SAYS, "", said, log=tmp_path / "out") as started,
            pytest.raises(PortTaken) as raised,
        ):
            wait_listening([first, taken], "service", started, tmp_path / "out", soon())
    assert f"another process listens on {taken}: pid " in str(raised.value)
    assert f"listens on {first}" not in str(raised.value)


def test_the_wait_ends_when_the_process_listens_on_every_port(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with process(LISTENS_ON_ALL, *map(str, ports), log=tmp_path / "out") as started:
        wait_listening(ports, "service", started, tmp_path / "out", soon())
        assert started.poll() is None


def test_one_port_of_several_held_by_another_process_is_a_port_taken(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with (
        process(LISTENS, str(ports[0]), log=tmp_path / "a") as started,
        process(LISTENS, str(ports[1]), log=tmp_path / "b") as other,
        pytest.raises(PortTaken, match=f"another process listens on {ports[1]}: pid {other.pid} "),
    ):
        wait_listening(ports, "service", started, tmp_path / "a", soon())


def test_a_process_that_ends_for_another_reason_is_not_started_again(tmp_path: Path) -> None:
    port = free_port()
    with (
        process(ENDS, log=tmp_path / "out") as started,
        pytest.raises(JasminError, match="service ended at start:\ngave up") as raised,
    ):
        wait_listening([port], "service", started, tmp_path / "out", soon())
    assert not isinstance(raised.value, PortTaken)


def test_a_listener_on_another_loopback_address_is_no_conflict(tmp_path: Path) -> None:
    """127.0.0.2:P does not keep the service from 127.0.0.1:P: no restart for it."""
    port = free_port([])
    with (
        socket.create_server(("127.0.0.2", port)),
        process(LISTENS, str(port), log=tmp_path / "out") as started,
    ):
        wait_listening([port], "service", started, tmp_path / "out", soon())


def test_a_free_port_is_below_the_ephemeral_range_and_not_one_already_given() -> None:
    lowest = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    given: list[int] = []
    for _ in range(50):
        port = free_port(given)
        assert 10000 <= port < lowest and port not in given
        with socket.create_server(("127.0.0.1", port)):  # free: it binds
            pass
        given.append(port)


def test_a_port_given_lately_is_not_given_again_though_nothing_bound_it() -> None:
    """A server started with a port binds it a while later; until then the probe sees it
    free, and a second test of the same worker could be given it too."""
    given = [free_port() for _ in range(500)]  # (at random: a repeat all but certain)
    assert len(set(given)) == len(given)


def test_each_test_worker_picks_from_a_slice_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    slices = []
    for index in range(4):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{index}")
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
        slices.append(port_range(32768))
        assert all(free_port() in slices[-1] for _ in range(20))
    assert [(s.start, s.stop) for s in slices] == [
        (10000, 15692), (15692, 21384), (21384, 27076), (27076, 32768)
    ]  # fmt: skip
    # outside a worker, or with a worker id that makes no sense: the whole range
    for worker, count in (("", "4"), ("gw4", "4"), ("master", "2"), ("gw0", "0")):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", count)
        assert port_range(32768) == range(10000, 32768)
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert port_range(32768) == range(10000, 32768)


def listening_said(started: subprocess.Popen[bytes], log: Path) -> None:
    """Until `started`, writing `log`, says it listens (it has bound and listens then)."""
    deadline = soon()
    while b"listening" not in log.read_bytes():
        assert started.poll() is None, f"the process ended: {log.read_text()}"
        assert time.monotonic() < deadline, "the process never listened"
        time.sleep(0.01)


@pytest.mark.parametrize("code", [LISTENS, CHILD_LISTENS], ids=["itself", "its-child"])
def test_a_benchmarks_server_is_its_own_only_when_it_or_a_descendant_listens(
    code: str, tmp_path: Path
) -> None:
    """bench/fleet/server.py's readiness check (`listens_on`, on bench/common.py's reading of
    /proc that the wait above uses too): a port answered by another process is not the
    benchmark's server, which a test's own server on the same port could have been."""
    port = free_port()
    with process(code, str(port), log=tmp_path / "out") as started:
        listening_said(started, tmp_path / "out")
        assert listens_on(started.pid, port)
        with process(SAYS, "", "", log=tmp_path / "other") as other:
            assert not listens_on(other.pid, port)
