"""Measuring helpers shared by the benchmarks (Linux /proc readings, loopback ports)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import socket
import sqlite3
import statistics
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Above this share of the CPUs used by other processes, a run's figures are not trusted.
BUSY_MACHINE_PERCENT = 10.0


#: Iterations of `host_gauge_ms`'s fixed work: 50-135 ms of CPU on the 2-core machine of
#: docs/performance.md, as fast or slow as its host ran it.
GAUGE_ITERATIONS = 30_000


#: How long a benchmark waits for its server to answer: generous, a busy machine (the test
#: suite runs a quick benchmark) can take long to import and start it.
READY_SECONDS = 120


#: the OS's randomness, not the random module's state: a test library may seed that one the
#: same in every test worker (Hypothesis does while its tests run), and workers would then
#: draw the same ports
_ENTROPY = random.SystemRandom()


#: the ports this process gave lately: not given again before a server started with one has
#: had time to bind it (the probe below sees a port only once it is bound)
_GIVEN: deque[int] = deque(maxlen=512)
LOWEST_PORT = 10000


def port_range(lowest: int) -> range:
    """The ports this process picks from, below `lowest` (the kernel's first ephemeral
    port). In a pytest-xdist worker, and in the processes its tests start (they inherit
    PYTEST_XDIST_WORKER, "gwN", and PYTEST_XDIST_WORKER_COUNT), the N-th of as many equal
    slices: two workers never pick the same port, whatever the timing of their servers'
    starts (random picks over the whole range met about once in 22,000 pairs)."""
    whole = range(LOWEST_PORT, max(lowest, LOWEST_PORT + 1))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    try:
        index, count = int(worker.removeprefix("gw")), int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    except (KeyError, ValueError):
        return whole
    if not 0 <= index < count or len(whole) // count < 100:
        return whole
    size = len(whole) // count
    return range(whole.start + index * size, whole.start + (index + 1) * size)


def free_port(taken: Iterable[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to right now, for a server started
    next, and not one of `taken` nor one this process gave lately. Chosen below the kernel's
    range of ephemeral ports: there no client socket of another process (a test's
    connection, a database session) can take it before the server binds it, nor can a server
    that binds port 0; and in a test worker from its own slice (`port_range`)."""
    try:
        lowest = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        lowest = 32768
    ports = port_range(lowest)
    chosen = set(taken) | set(_GIVEN)
    for _ in range(1000):
        port = _ENTROPY.choice(ports)
        if port in chosen:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.append(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded range
        sock.bind(("127.0.0.1", 0))
        ephemeral: int = sock.getsockname()[1]
        return ephemeral


def host_gauge_ms(repeats: int = 3) -> float:
    """How fast the host runs Python right now: the median CPU time, in ms, of a fixed piece
    of work (string formatting, dict updates, JSON encoding: the stuff of a request's
    handling), done `repeats` times. A virtual machine's share of its host's cores moves:
    the same code's CPU a message moved by twice within minutes on the machine of
    docs/performance.md ("The host's speed, gauged"), and the guest counts the time its
    cores were held back as CPU time. A benchmark's rounds compare only at similar gauges."""
    timings = []
    for _ in range(repeats):
        counts: dict[str, int] = {}
        began = time.process_time()
        for i in range(GAUGE_ITERATIONS):
            key = f"k{i % 1000}"
            counts[key] = counts.get(key, 0) + 1
            json.dumps({"a": i, "b": key})
        timings.append((time.process_time() - began) * 1000)
    return round(statistics.median(timings), 1)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads), from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reaped_cpu_seconds(pid: int) -> float | None:
    """CPU time of a process's children that have ended and that it has waited for (the
    sessions a PostgreSQL server has closed, say), from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def process_children() -> dict[int, list[int]]:
    """Every process alive now, by parent: parent pid -> its children's pids."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time of a process and of all its descendants alive now (a multi-process server)."""
    children = process_children()
    total, todo = None, [pid]
    while todo:
        current = todo.pop()
        seconds = cpu_seconds(current)
        if seconds is not None:
            total = (total or 0.0) + seconds
        todo.extend(children.get(current, []))
    return total


def machine_busy_seconds() -> float | None:
    """CPU time spent busy by the whole machine (all cores), from /proc/stat."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def report_run(others: list[float], problems: list[str]) -> bool:
    """Print the warnings that qualify a run; returns whether the machine was busy."""
    busy = bool(others) and max(others) > BUSY_MACHINE_PERCENT
    if busy:
        print(
            f"WARNING: other processes used up to {max(others):.0f}% of the CPUs during the "
            "run; these figures understate the server (run again on an idle machine)"
        )
    for problem in problems:
        print(f"INVALID RUN: {problem}")
    return busy


def results_stamp() -> str:
    """A UTC time stamp for a results file name (the results folder is made if needed)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPUs, kernel, Python, SQLite."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


#: local addresses (as /proc/net/tcp and tcp6 write them) whose listener keeps a service from
#: binding 127.0.0.1: 127.0.0.1, 0.0.0.0, :: and ::ffff:127.0.0.1
CONFLICTING = {"0100007F", "00000000", "0" * 32, "0000000000000000FFFF00000100007F"}


def listening_inodes(port: int) -> set[int]:
    """The inodes of the TCP sockets listening on `port` now where a bind of 127.0.0.1 would
    meet them."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                address, number = fields[1].rsplit(":", 1)
                if fields[3] == "0A" and int(number, 16) == port and address in CONFLICTING:
                    found.add(int(fields[9]))
    return found


def held_sockets(pid: int) -> set[int]:
    """The inodes of the sockets one process holds now."""
    found = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # (an fd closed meanwhile)
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    found.add(int(target[8:-1]))
    return found


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets held by a process and by its descendants alive now."""
    children = process_children()
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        found |= held_sockets(current)
    return found
