"""`smsgw serve` on PostgreSQL (issue 16): a first start that works as on SQLite, a second
node serving the same database beside it, and a node killed outright leaving nothing in the
way of the next one. (Events between nodes: tests/test_multinode.py.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from smsgw.db.postgres import COPY_UNDER_WAY, NODE_LOCK, connect_arguments, hold_node_lock
from smsgw.tokens.rotation import OTHER_SIGNER
from tests.clients import TLS
from tests.conftest import free_port
from tests.pgcluster import Cluster

pytestmark = pytest.mark.one_engine("they choose their engines themselves")  # conftest.py


def _start(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "smsgw", "serve"],
        env=env | {"SMSGW_PORT": str(port)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def _read_until(process: subprocess.Popen[str], marker: str, within: float = 120) -> str:
    assert process.stdout is not None
    output = ""
    deadline = time.monotonic() + within
    while marker not in output and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        output += line
    assert marker in output, output
    return output


def _health(port: int) -> bool:
    try:
        return (
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5, verify=TLS).status_code == 200
        )
    except httpx.HTTPError:
        return False


def _wait_healthy(port: int, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while not _health(port):
        assert time.monotonic() < deadline, "smsgw did not become healthy"
        time.sleep(0.1)


def test_serve_on_postgresql_nodes_side_by_side(pg_cluster: Cluster, tmp_path: Path) -> None:
    url = pg_cluster.create_database()
    env = os.environ | {
        "SMSGW_DATA_DIR": str(tmp_path / "data"),
        "SMSGW_DATABASE_URL": url,
        "SMSGW_LOG_LEVEL": "warning",
    }
    first_port, second_port, third_port = free_port(), free_port(), free_port()
    first = _start(env, first_port)
    try:
        output = _read_until(first, "Try: curl")
        assert "smsgw created the database postgresql://" in output
        login = re.search(r"login: +(\S+)", output)
        password = re.search(r"password: (\S+)", output)
        assert login and password
        _wait_healthy(first_port)
        auth = (login.group(1), password.group(1))
        api = f"http://127.0.0.1:{first_port}/api/3rdparty/v1"
        body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "hi"}}
        sent = httpx.post(f"{api}/messages", json=body, auth=auth, timeout=30, verify=TLS)
        assert sent.status_code == 200, sent.text
        listed = httpx.get(f"{api}/messages", auth=auth, timeout=30, verify=TLS)
        assert [m["id"] for m in listed.json()] == [sent.json()["id"]]

        second = _start(env, second_port)  # the account exists: no first-start output
        try:
            _wait_healthy(second_port)
            there = httpx.get(f"http://127.0.0.1:{second_port}/api/3rdparty/v1/messages",
                              auth=auth, timeout=30, verify=TLS)  # fmt: skip
            assert [m["id"] for m in there.json()] == [sent.json()["id"]]
        finally:
            second.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
            assert second.wait(30) == 0

        first.send_signal(signal.SIGKILL)  # no goodbye: nothing of it may stay in the way
        first.wait(30)
        third = _start(env, third_port)
        try:
            _wait_healthy(third_port)
            again = httpx.get(f"http://127.0.0.1:{third_port}/api/3rdparty/v1/messages",
                              auth=auth, timeout=30, verify=TLS)  # fmt: skip
            assert [m["id"] for m in again.json()] == [sent.json()["id"]]
        finally:
            third.terminate()
            third.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)


def test_a_node_does_not_start_while_db_copy_fills_the_database(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    url = pg_cluster.create_database()
    copying = hold_node_lock(url, exclusive=True)  # as `smsgw db copy` holds it
    assert copying is not None
    env = os.environ | {"SMSGW_DATA_DIR": str(tmp_path / "data"), "SMSGW_DATABASE_URL": url,
                        "SMSGW_PORT": str(free_port())}  # fmt: skip
    with copying:
        refused = subprocess.run([sys.executable, "-m", "smsgw", "serve"], env=env,
                                 capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"error: {COPY_UNDER_WAY}", refused.stderr
    after = hold_node_lock(url, exclusive=True)  # and the refused node holds nothing
    assert after is not None
    after.close()


def test_a_node_with_another_jwt_secret_is_refused_unless_it_rotates(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    """Nodes check each other's tokens: they must sign with one secret. A node with another
    is refused in one line, unless it names the recorded one as its previous secret (a
    rotation); `smsgw tokens forget-secret` is the way out when that secret is lost."""
    url = pg_cluster.create_database()
    first, second, third = ("first-" + "s" * 40, "second-" + "s" * 40, "third-" + "s" * 40)

    def env(data: str, secret: str, **more: str) -> dict[str, str]:
        values = {"SMSGW_DATA_DIR": str(tmp_path / data), "SMSGW_DATABASE_URL": url,
                  "SMSGW_JWT_SECRET": secret, "SMSGW_LOG_LEVEL": "warning"}  # fmt: skip
        return os.environ | values | more

    def serves(environ: dict[str, str]) -> None:
        port = free_port()
        node = _start(environ, port)
        try:
            _wait_healthy(port)
        finally:
            node.send_signal(signal.SIGINT)
            assert node.wait(30) == 0

    def refused(environ: dict[str, str]) -> str:
        environ = environ | {"SMSGW_PORT": str(free_port())}
        done = subprocess.run([sys.executable, "-m", "smsgw", "serve"], capture_output=True,
                              text=True, timeout=120, env=environ)  # fmt: skip
        assert done.returncode == 2, done.stdout + done.stderr
        return done.stderr.strip()

    serves(env("a", first))  # records its secret
    assert refused(env("b", second)) == f"error: {OTHER_SIGNER}"
    serves(env("b", second, SMSGW_JWT_PREVIOUS_SECRET=first))  # a rotation: recorded
    assert refused(env("a", first)) == f"error: {OTHER_SIGNER}"  # the old one is out
    forget = [sys.executable, "-m", "smsgw", "tokens", "forget-secret"]
    forgot = subprocess.run(forget, env=env("c", third), capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert forgot.returncode == 0 and "forgot" in forgot.stdout, forgot.stderr
    serves(env("c", third))
    assert refused(env("b", second)) == f"error: {OTHER_SIGNER}"


def test_of_two_nodes_with_other_secrets_started_at_once_one_serves_one_is_refused(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    """On a new database (no schema yet), two nodes with different secrets start at the
    same moment, several times over: each time one serves and the other is refused in one
    line, never with a traceback of the application's start-up."""
    for attempt in range(3):
        url = pg_cluster.create_database()
        nodes = []
        for name in ("a", "b"):
            environ = os.environ | {
                "SMSGW_DATA_DIR": str(tmp_path / f"{name}{attempt}"),
                "SMSGW_DATABASE_URL": url,
                "SMSGW_JWT_SECRET": f"{name}-" + "s" * 40,
                "SMSGW_LOG_LEVEL": "warning",
            }
            port = free_port()
            nodes.append((_start(environ, port), port))
        try:
            refused, port = _one_refused_one_serving(nodes)
            out, _ = refused.communicate(timeout=30)
            assert refused.returncode == 2, out
            assert out.strip().splitlines()[-1] == f"error: {OTHER_SIGNER}", out
            assert "Traceback" not in out
            _wait_healthy(port)
        finally:
            for node, _ in nodes:
                if node.poll() is None:
                    node.send_signal(signal.SIGINT)
                    assert node.wait(30) == 0
                if node.stdout is not None:
                    node.stdout.close()


def _one_refused_one_serving(
    nodes: list[tuple[subprocess.Popen[str], int]], within: float = 120
) -> tuple[subprocess.Popen[str], int]:
    """The node that ended, and the port of the one that serves, once one has ended and the
    other answers its health check."""
    deadline = time.monotonic() + within
    while True:
        ended = [node for node, _ in nodes if node.poll() is not None]
        ports = [port for node, port in nodes if node.poll() is None and _health(port)]
        if len(ended) == 1 and len(ports) == 1:
            return ended[0], ports[0]
        assert len(ended) < 2, [node.communicate(timeout=30)[0] for node, _ in nodes]
        assert time.monotonic() < deadline, "no node ended, or none served"
        time.sleep(0.1)


def _node_lock_holders(url: str) -> set[int]:
    """The sessions that hold the node lock shared (serving nodes)."""
    with psycopg.connect(**connect_arguments(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 "
            "AND objid = %s AND mode = 'ShareLock' AND granted",
            (NODE_LOCK,),
        ).fetchall()
    return {row[0] for row in rows}


def test_a_node_takes_its_lock_again_when_postgresql_ends_the_session(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    """A restart of PostgreSQL ends the session that held the node lock: the node takes it
    again (so `smsgw db copy` still cannot fill the database under it), and serves on."""
    url = pg_cluster.create_database()
    environ = os.environ | {"SMSGW_DATA_DIR": str(tmp_path / "data"), "SMSGW_DATABASE_URL": url,
                            "SMSGW_LOG_LEVEL": "warning"}  # fmt: skip
    port = free_port()
    node = _start(environ, port)
    try:
        _wait_healthy(port)
        (first,) = _node_lock_holders(url)
        with psycopg.connect(**connect_arguments(url), autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (first,))
        deadline = time.monotonic() + 60  # checked every NodeLock.CHECK_SECONDS (5 s)
        while not (_node_lock_holders(url) - {first}):
            assert time.monotonic() < deadline, "the node did not take its lock again"
            time.sleep(0.2)
        assert hold_node_lock(url, exclusive=True) is None  # as `smsgw db copy` would try
        assert _health(port)
    finally:
        node.send_signal(signal.SIGINT)
        output, _ = node.communicate(timeout=30)
    assert node.returncode == 0, output
    assert "node lock: its session had ended; taken again" in output


def test_a_role_that_may_not_use_the_tables_is_told_in_one_line(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    """A node connected as a role with no rights on smsgw's tables (made by another role)
    ends with one line saying so (exit 2), not a traceback of its start-up."""
    url = pg_cluster.create_database()
    upgrade = [sys.executable, "-m", "smsgw", "db", "upgrade"]
    environ = os.environ | {"SMSGW_DATA_DIR": str(tmp_path / "owner"), "SMSGW_DATABASE_URL": url}
    done = subprocess.run(upgrade, env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    pg_cluster.add_user("stranger", "stranger-password")
    theirs = make_url(url).set(username="stranger", password="stranger-password")
    environ = os.environ | {
        "SMSGW_DATA_DIR": str(tmp_path / "stranger"),
        "SMSGW_DATABASE_URL": theirs.render_as_string(hide_password=False),
        "SMSGW_PORT": str(free_port()),
    }
    done = subprocess.run([sys.executable, "-m", "smsgw", "serve"], env=environ,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip()
    assert line.startswith("error: cannot use this PostgreSQL database: "), line
    assert "permission denied" in line and len(line.splitlines()) == 1, line
