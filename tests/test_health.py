"""Health probes: upstream's body, and real failures (database gone, worker stalled, disk)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from smsgw.config import Settings, SettingsError, load_settings
from smsgw.db.postgres import WRITE_LOCK, connect_arguments
from tests.clients import TLS
from tests.conftest import LiveServer, make_settings, running

PROBES = ("/health", "/health/live", "/health/ready", "/health/startup")
PREFIXES = ("", "/api/3rdparty/v1", "/3rdparty/v1")


@pytest.fixture
def quick(tmp_path: Path) -> Iterator[LiveServer]:
    """A server whose worker runs every 0.2 s and counts as stalled after 1 s."""
    settings = make_settings(tmp_path / "data", worker_interval_seconds=0.2, worker_stall_seconds=1)
    with running(settings) as live:
        yield live


def probe(server: LiveServer, path: str = "/health") -> tuple[int, dict[str, Any]]:
    response = httpx.get(server.url + path, timeout=20, verify=TLS)
    assert response.headers["content-type"] == "application/json"
    return response.status_code, response.json()


def until(server: LiveServer, path: str, status: int, within: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        code, body = probe(server, path)
        if code == status:
            return body
        assert time.monotonic() < deadline, (code, body)
        time.sleep(0.1)


def test_every_probe_passes_at_the_root_and_under_the_api_without_auth(
    server: LiveServer,
) -> None:
    for prefix in PREFIXES:
        for path in PROBES:
            status, body = probe(server, prefix + path)
            assert status == 200, (prefix + path, body)
            assert body["status"] == "pass"
            assert isinstance(body["version"], str)
    _, ready = probe(server, "/health/ready")
    assert set(ready["checks"]) == {"db:ping", "worker:loop", "disk:free"}
    ping = ready["checks"]["db:ping"]
    assert ping == {
        "description": "Database ping",
        "observedUnit": "failed pings",
        "observedValue": 0,
        "status": "pass",
    }
    assert ready["checks"]["disk:free"]["observedValue"] > 0
    assert set(probe(server, "/health/live")[1]["checks"]) == {"worker:loop"}
    assert "checks" not in probe(server, "/health/startup")[1]


@contextmanager
def database_out_of_reach(settings: Settings) -> Iterator[None]:
    """For the block, no session of the database can be opened: SQLite's file is gone from
    where the server opens it; PostgreSQL's database refuses new sessions."""
    if settings.database_scheme == "sqlite":
        data = settings.data_dir
        moved = data.with_name("moved-away")
        data.rename(moved)
        try:
            yield
        finally:
            moved.rename(data)
        return
    database = connect_arguments(settings.resolved_database_url)["dbname"]
    with postgresql_admin(settings, "postgres") as admin:  # not the database it closes
        name = psycopg.sql.Identifier(database)
        admin.execute(psycopg.sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
        try:
            yield
        finally:
            admin.execute(psycopg.sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))


@contextmanager
def write_lock_held(settings: Settings) -> Iterator[None]:
    """For the block, another process holds the lock every writer of the database takes:
    SQLite's (BEGIN IMMEDIATE), or on PostgreSQL the advisory lock of smsgw's writers
    (db/postgres.WRITE_LOCK)."""
    if settings.database_scheme == "sqlite":
        blocker = sqlite3.connect(settings.data_dir / "smsgw.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        return
    with postgresql_admin(settings) as admin:
        admin.execute(f"SELECT pg_advisory_lock({WRITE_LOCK})")
        try:
            yield
        finally:
            admin.execute(f"SELECT pg_advisory_unlock({WRITE_LOCK})")


@contextmanager
def postgresql_admin(
    settings: Settings, database: str | None = None
) -> Iterator[psycopg.Connection[Any]]:
    """A session of the test's PostgreSQL server (on its database, or `database`), in
    autocommit, beside the server's."""
    arguments = connect_arguments(settings.resolved_database_url)
    with psycopg.connect(**arguments | ({"dbname": database} if database else {})) as conn:
        conn.autocommit = True
        yield conn


def test_readiness_fails_while_the_database_cannot_be_opened(server: LiveServer) -> None:
    with database_out_of_reach(server.settings):
        for path in ("/health", "/health/ready", "/api/3rdparty/v1/health"):
            status, body = probe(server, path)
            assert status == 503, body
            assert body["status"] == "fail"
            assert body["checks"]["db:ping"]["status"] == "fail"
        assert probe(server, "/health")[1]["checks"]["db:ping"]["observedValue"] >= 3
        assert probe(server, "/health/live")[0] == 200  # the process itself is fine
    status, body = probe(server)
    assert status == 200, body
    assert body["checks"]["db:ping"]["observedValue"] == 0


def test_liveness_and_readiness_fail_while_the_worker_is_stalled(quick: LiveServer) -> None:
    until(quick, "/health/live", 200)
    # A message expiring in 5 s gives the worker something to write (with nothing to do it
    # only reads, which no lock stops)...
    with quick.client(quick.create_user("alice")) as api:
        sent = api.post("/messages", json={"phoneNumbers": ["+12025550100"], "message": "x",
                                            "ttl": 5})  # fmt: skip
        assert sent.status_code == 200, sent.text
    # ...and another process holds the write lock: the worker's rounds block on it.
    with write_lock_held(quick.settings):
        body = until(quick, "/health/live", 503)
        assert body["checks"]["worker:loop"]["status"] == "fail"
        assert body["checks"]["worker:loop"]["observedValue"] >= 1
        status, ready = probe(quick, "/health")
        assert status == 503
        assert ready["checks"]["db:ping"]["status"] == "pass"
        assert ready["checks"]["worker:loop"]["status"] == "fail"
    until(quick, "/health/live", 200)


def test_readiness_fails_when_the_data_directory_is_short_of_space(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", health_min_free_mb=10**9)  # a petabyte
    with running(settings) as live:
        status, body = probe(live, "/health/ready")
        assert status == 503
        assert body["checks"]["disk:free"]["status"] == "fail"
        assert body["checks"]["db:ping"]["status"] == "pass"
        assert probe(live, "/health/startup")[0] == 200


def test_a_stall_limit_shorter_than_a_worker_round_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="SMSGW_WORKER_STALL_SECONDS"):
        load_settings(data_dir=tmp_path, worker_interval_seconds=10, worker_stall_seconds=5)
