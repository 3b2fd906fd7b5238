"""A throwaway PostgreSQL cluster for the tests: started on first use, stopped at exit.

The installed server binaries (Debian's `postgresql` package: /usr/lib/postgresql/N/bin, or
`SMSGW_TEST_PG_BIN`) run a cluster in a fresh directory (`_parent`: in memory, /dev/shm, or
under /tmp), listening on 127.0.0.1 only, at a free port, with durability off (fsync,
synchronous_commit: a test's data need not survive a crash of the machine;
`start(durable=True)` keeps PostgreSQL's durable defaults, for the benchmarks, whose SQLite
figures are durable too). PostgreSQL refuses to run as root; as root (CI), the server runs as
the `postgres` user the package creates. Each test gets a database of its own.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import free_port

if TYPE_CHECKING:
    import psycopg

START_SECONDS = 60

#: Where a cluster that need not be durable goes when this tmpfs has the room (`_parent`).
MEMORY = Path("/dev/shm")
MEMORY_ROOM = 2 << 30  # bytes free

#: How CREATE DATABASE copies its template: file by file, with a checkpoint before and after
#: (fsync off: writes to the page cache), rather than PostgreSQL 15's default WAL_LOG, which
#: reads and writes every page through the shared buffers and the WAL. On the 2-core test
#: machine, in memory: 13 ms for an empty database, not 22; 17 ms, not 27, for a migrated one.
STRATEGY = "STRATEGY FILE_COPY"


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory holding `initdb`, or None."""
    given = os.environ.get("SMSGW_TEST_PG_BIN")
    if given:
        return Path(given)
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


@dataclass
class Cluster:
    """A running cluster; `url(name)` is a database's SQLAlchemy URL (user `postgres`)."""

    bin: Path
    directory: Path
    port: int
    run_as: list[str]

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, owner: str = "postgres") -> str:
        """A new empty database of `owner`; its URL (as user postgres)."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}" {STRATEGY}')
        return self.url(name)

    def drop_databases(self, urls: list[str]) -> None:
        """Drop the databases of `urls` (their sessions ended: WITH (FORCE)). A test's
        database dropped when it ends keeps the cluster small: the suite's thousands of
        databases of about 10 MB each took the session's end half a minute to delete."""
        import psycopg

        with contextlib.suppress(psycopg.Error), self._admin() as conn:  # (cleaning only)
            for url in urls:
                conn.execute(f'DROP DATABASE IF EXISTS "{_name_of(url)}" WITH (FORCE)')

    def remake_from(self, url: str, template: str) -> bool:
        """Make the database of `url` again as a copy of the database of `template`, if it
        is empty (no table of its own) and nobody is connected to it: whether it did. A copy
        of a migrated database costs PostgreSQL a file copy, not the migrations again."""
        import psycopg

        name, source = _name_of(url), _name_of(template)
        with psycopg.connect(url) as conn:
            has_tables = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n"
                " ON n.oid = c.relnamespace WHERE n.nspname = 'public')"
            ).fetchone()
        if has_tables is None or has_tables[0]:
            return False
        with self._admin() as conn:
            try:
                conn.execute(f'DROP DATABASE "{name}"')  # (refused while a session is on it)
            except psycopg.errors.ObjectInUse:
                return False
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}" {STRATEGY}')
        return True

    def add_user(self, name: str, password: str) -> None:
        """A login role that must give its password (scram-sha-256) from 127.0.0.1, and may
        create databases (the other roles' sessions need none)."""
        import psycopg

        with self._admin() as conn:
            conn.execute(
                psycopg.sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    psycopg.sql.Identifier(name), psycopg.sql.Literal(password)
                )
            )
        hba = self.directory / "data" / "pg_hba.conf"
        rule = f"host all {name} 127.0.0.1/32 scram-sha-256\n"
        hba.write_text(rule + hba.read_text())  # the first matching line decides
        self._run("pg_ctl", "-D", str(self.directory / "data"), "reload")
        # reload is asynchronous: wait until the rule applies (a wrong password is refused)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            try:
                psycopg.connect(
                    f"host=127.0.0.1 port={self.port} user={name} dbname=postgres "
                    "password=surely-not-it connect_timeout=5"
                ).close()
            except psycopg.OperationalError as exc:
                if "password" in str(exc):
                    return
            time.sleep(0.05)
        raise RuntimeError("pg_hba.conf reload did not take effect")

    def _admin(self) -> psycopg.Connection[Any]:
        """A session of the superuser on the `postgres` database, in autocommit."""
        import psycopg

        return psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        )

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError, RuntimeError):  # not up
            self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.run_as, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def _name_of(url: str) -> str:
    """The database a URL of `Cluster.url` names."""
    return url.rsplit("/", 1)[1]


def _parent(durable: bool) -> str:
    """The directory a new cluster's directory goes in: /dev/shm, a tmpfs (memory), for a
    cluster that need not be durable, when it has 2 GiB free; /tmp otherwise (a durable cluster,
    or a container's small /dev/shm). A database is some 300 files: on the 2-core test
    machine's disk (ext4), creating one took 250 us a file even with fsync off, and
    CREATE DATABASE 100-350 ms; in memory, 13-25 ms."""
    if not durable:
        with contextlib.suppress(OSError):
            room = os.statvfs(MEMORY)
            if room.f_bavail * room.f_frsize >= MEMORY_ROOM and os.access(MEMORY, os.W_OK):
                return str(MEMORY)
    return "/tmp"


def start(attempts: int = 3, durable: bool = False) -> Cluster:
    """Create and start a cluster. Raises RuntimeError when PostgreSQL is not installed or
    does not start (with its log). The port is chosen free before the server binds it: if
    another process took it meanwhile, a new cluster is tried on another port. `durable`:
    fsync, synchronous_commit and full_page_writes at PostgreSQL's defaults (on), so that a
    commit waits for its WAL to reach the disk; otherwise off, as a test needs nothing kept."""
    for attempt in range(attempts):
        try:
            return _start(durable)
        except RuntimeError as exc:
            if "already in use" not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _start(durable: bool) -> Cluster:
    binaries = server_binaries()
    if binaries is None:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    run_as: list[str] = []
    directory = Path(tempfile.mkdtemp(prefix="smsgw-pg-", dir=_parent(durable)))
    if os.geteuid() == 0:  # initdb and postgres refuse root
        owner = pwd.getpwnam("postgres")
        os.chown(directory, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    cluster = Cluster(binaries, directory, free_port(), run_as)
    try:
        cluster._run(
            "initdb", "-D", str(directory / "data"), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--locale=C", "-N",
        )  # fmt: skip
        options = f"-p {cluster.port} -k {directory} -c listen_addresses=127.0.0.1 "
        options += "-c max_connections=200"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        cluster._run(
            "pg_ctl", "-D", str(directory / "data"), "-w", "-t", str(START_SECONDS),
            "-l", str(directory / "log"), "-o", options, "start",
        )  # fmt: skip
    except BaseException as exc:
        log = directory / "log"
        detail = log.read_text(errors="replace") if log.exists() else ""
        cluster.stop()
        if isinstance(exc, RuntimeError):
            raise RuntimeError(f"{exc}\n{detail}") from exc
        raise
    return cluster
