"""The tests' PostgreSQL cluster (tests/pgcluster.py) starts even when its port is taken
between choosing it and binding it (another test process may take it), and cleans up."""

from __future__ import annotations

import socket

import pytest

from tests import pgcluster

pytestmark = pytest.mark.one_engine("no database")  # conftest.py


def test_a_port_taken_meanwhile_makes_the_cluster_start_on_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy])
        free = pgcluster.free_port
        monkeypatch.setattr(pgcluster, "free_port", lambda: next(ports, None) or free())
        cluster = pgcluster.start()
        try:
            assert cluster.port != busy
            assert cluster.create_database().startswith(
                f"postgresql://postgres@127.0.0.1:{cluster.port}/"
            )
        finally:
            cluster.stop()
    assert not cluster.directory.exists()


def test_a_durable_cluster_syncs_its_commits() -> None:
    """The benchmarks' cluster (bench/nodes) keeps PostgreSQL's durable defaults."""
    cluster = pgcluster.start(durable=True)
    try:
        with cluster._admin() as conn:
            shown = {
                name: conn.execute(f"SHOW {name}").fetchone()
                for name in ("fsync", "synchronous_commit", "full_page_writes")
            }
        assert shown == {name: ("on",) for name in shown}
    finally:
        cluster.stop()
