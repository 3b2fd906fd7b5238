"""The benchmark's PostgreSQL: a throwaway cluster from the machine's server binaries
(tests/pgcluster.py) with PostgreSQL's durable defaults (fsync, synchronous_commit and
full_page_writes on: a commit waits for its WAL on the disk, as SQLite's `synchronous=FULL`
does), the CPU time of its processes, and its counts of commits and WAL syncs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from tests import pgcluster

from bench.common import cpu_seconds, process_children, reaped_cpu_seconds

#: The server's own processes, by the title PostgreSQL gives them; every other child of
#: the postmaster is a session (a backend serving a client's connection).
BACKGROUND = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum",
    "logical replication",
    "stats collector",
    "archiver",
)


def start() -> pgcluster.Cluster:
    """A durable cluster, listening on 127.0.0.1 only; stop it with `.stop()`."""
    return pgcluster.start(durable=True)


def postmaster_pid(cluster: pgcluster.Cluster) -> int:
    """The cluster's main process (the first line of its postmaster.pid)."""
    return int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0])


@dataclass
class PgCpu:
    """CPU seconds used so far by a cluster's processes."""

    sessions: float  # the backends serving the nodes' connections
    background: float  # the postmaster, WAL writer, checkpointer, autovacuum...
    ended: float  # processes that have ended (closed sessions, autovacuum workers)

    @property
    def total(self) -> float:
        return self.sessions + self.background + self.ended

    def __sub__(self, other: PgCpu) -> PgCpu:
        return PgCpu(
            self.sessions - other.sessions,
            self.background - other.background,
            self.ended - other.ended,
        )


def pg_cpu(postmaster: int) -> PgCpu:
    """What the cluster's processes have used so far, from /proc."""
    sessions = background = 0.0
    for pid in process_children().get(postmaster, []):
        seconds = cpu_seconds(pid) or 0.0
        if _title(pid).startswith(tuple(f"postgres: {name}" for name in BACKGROUND)):
            background += seconds
        else:
            sessions += seconds
    background += cpu_seconds(postmaster) or 0.0
    return PgCpu(sessions, background, reaped_cpu_seconds(postmaster) or 0.0)


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


@dataclass
class PgCounts:
    """Cluster-wide counters: transactions committed, WAL syncs (fdatasync) and WAL bytes.
    PostgreSQL's sessions report them at most once a second: over a run of several seconds
    they are right to within about a second's worth."""

    commits: int
    wal_syncs: int
    wal_bytes: int

    def __sub__(self, other: PgCounts) -> PgCounts:
        return PgCounts(
            self.commits - other.commits,
            self.wal_syncs - other.wal_syncs,
            self.wal_bytes - other.wal_bytes,
        )


@dataclass
class PgWatch:
    """What the benchmark reads of a running cluster."""

    cluster: pgcluster.Cluster

    def __post_init__(self) -> None:
        self.postmaster = postmaster_pid(self.cluster)

    def cpu(self) -> PgCpu:
        return pg_cpu(self.postmaster)

    def counts(self) -> PgCounts:
        with psycopg.connect(self.cluster.url("postgres")) as conn:
            commits = conn.execute("SELECT sum(xact_commit) FROM pg_stat_database").fetchone()
            wal = conn.execute("SELECT wal_sync, wal_bytes FROM pg_stat_wal").fetchone()
        assert commits is not None and wal is not None
        return PgCounts(int(commits[0]), int(wal[0]), int(wal[1]))
