"""Crash safety: `smsgw serve` killed with SIGKILL while clients POST messages loses no
acknowledged message and duplicates none, with one server process and with two.

Clients POST concurrently, half of the messages with their own id (which they retry after
the crash, as a careful client does with a request that got no answer) and half with an id
the server makes. Once enough are acknowledged, the server is killed without warning; with
two processes one of them is, and the supervisor then stops the other. The server is
started again on the same data directory: every acknowledged id must be readable, every
retried id must be stored once, and no request must have left two messages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from smsgw.config import Settings
from smsgw.db import migrate
from tests.clients import TLS
from tests.conftest import (
    API,
    Account,
    create_account,
    database_environment,
    database_rows,
    free_port,
    make_settings,
)

CLIENTS = 6
#: Acknowledged messages to wait for before the kill: enough to be well into the load.
ACKNOWLEDGED_BEFORE_KILL = 40
PHONE = "+12025550100"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]


@contextmanager
def serving(settings: Settings, workers: int) -> Iterator[Server]:
    """`smsgw serve --workers N` as its own process group (so that nothing outlives it)."""
    port = free_port()
    env = os.environ | {
        **database_environment(settings),
        "SMSGW_DATA_DIR": str(settings.data_dir),
        "SMSGW_PORT": str(port),
        "SMSGW_BOOTSTRAP_ACCOUNT": "false",
        "SMSGW_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "smsgw", "serve", "--workers", str(workers)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", process)
    try:
        wait_until_serving(server)
        yield server
    finally:
        with _no_such_process():
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=60)


class _no_such_process:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is ProcessLookupError


def wait_until_serving(server: Server) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert server.process.poll() is None, server.process.communicate()[1]
        try:
            if httpx.get(server.url + "/health/startup", timeout=10, verify=TLS).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "smsgw did not start"
        time.sleep(0.05)


@dataclass
class Load:
    """What the clients saw: ids acknowledged (a 2xx), own ids that got no answer."""

    acknowledged: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    attempts: int = 0
    refused: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough: threading.Event = field(default_factory=threading.Event)


def post_until_refused(url: str, account: Account, load: Load, own_ids: bool) -> None:
    """POST messages one after another until the server stops answering."""
    with httpx.Client(
        base_url=url + API, auth=(account.login, account.password), verify=TLS
    ) as client:
        while True:
            own = str(uuid.uuid4()) if own_ids else None
            body: dict[str, object] = {"phoneNumbers": [PHONE], "textMessage": {"text": "x"}}
            if own is not None:
                body["id"] = own
            with load.lock:
                load.attempts += 1
            try:
                answer = client.post("/messages", json=body, timeout=60)
            except httpx.TransportError:
                with load.lock:
                    if own is not None:
                        load.unanswered.append(own)
                return
            with load.lock:
                if not answer.is_success:
                    load.refused.append(answer.status_code)
                    return
                load.acknowledged.append(answer.json()["id"])
                if len(load.acknowledged) >= ACKNOWLEDGED_BEFORE_KILL:
                    load.enough.set()


def node_pids(supervisor: int) -> list[int]:
    """The server processes a supervisor spawned (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def crash(server: Server, workers: int) -> None:
    """SIGKILL the server (with two processes: one of them; the supervisor stops the rest)."""
    if workers == 1:
        os.kill(server.process.pid, signal.SIGKILL)
    else:
        nodes = node_pids(server.process.pid)
        assert len(nodes) == workers
        os.kill(nodes[0], signal.SIGKILL)
    server.process.wait(timeout=60)  # the supervisor notices and stops the other process
    with _no_such_process():
        os.killpg(server.process.pid, signal.SIGKILL)  # and nothing of it is left


def stored(settings: Settings) -> list[str]:
    """Every message id in the database, read directly (duplicates included); SQLite's file
    is checked whole first."""
    if settings.database_scheme == "sqlite":
        assert database_rows(settings, "PRAGMA integrity_check") == [("ok",)]
    return [row[0] for row in database_rows(settings, "SELECT ext_id FROM messages")]


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_under_load_loses_no_acknowledged_message_and_duplicates_none(
    tmp_path: Path, workers: int
) -> None:
    data_dir = tmp_path / "data"
    settings = make_settings(data_dir)
    migrate.upgrade(settings)
    create_account(settings, "alice", "correct horse battery")
    account = Account("alice", "correct horse battery")

    load = Load()
    with serving(settings, workers) as server:
        posters = [
            threading.Thread(
                target=post_until_refused, args=(server.url, account, load, n % 2 == 0)
            )
            for n in range(CLIENTS)
        ]
        for poster in posters:
            poster.start()
        deadline = time.monotonic() + 120
        while not load.enough.wait(timeout=0.1):
            assert not load.refused, load.refused
            assert time.monotonic() < deadline, f"too few acknowledged: {load.acknowledged}"
        crash(server, workers)
        for poster in posters:
            poster.join(timeout=120)
        assert not any(poster.is_alive() for poster in posters)
    assert not load.refused, load.refused

    with (
        serving(settings, workers) as server,
        httpx.Client(
            base_url=server.url + API,
            auth=(account.login, account.password),
            timeout=60,
            verify=TLS,
        ) as client,
    ):
        for own in load.unanswered:  # a careful client sends again what got no answer
            body = {"id": own, "phoneNumbers": [PHONE], "textMessage": {"text": "x"}}
            assert client.post("/messages", json=body).status_code in (200, 202, 409)
        for message_id in load.acknowledged:
            assert client.get(f"/messages/{message_id}").status_code == 200, message_id

    ids = stored(settings)
    assert len(ids) == len(set(ids)), "a message is stored twice"
    assert set(load.acknowledged) | set(load.unanswered) <= set(ids)
    assert len(ids) <= load.attempts  # no request left more than one message
