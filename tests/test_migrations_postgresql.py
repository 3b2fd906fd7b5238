"""The same migrations on PostgreSQL 15+: they run, match the models, go down and up again,
and build the schema they build on SQLite (issue 16, first part: the schema on both engines).

Each test gets a database of its own in a cluster the session starts (tests/pgcluster.py).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.tables import Base
from tests.conftest import make_settings
from tests.pgcluster import Cluster

pytestmark = [
    pytest.mark.one_engine("they choose their engines themselves"),  # conftest.py
    pytest.mark.real_migrations,  # Alembic itself, never a copy of a migrated database
]

TABLES = {"users", "devices", "messages", "recipients", "message_states", "system_values"}


@pytest.fixture
def pg_settings(pg_cluster: Cluster, tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", database_url=pg_cluster.create_database())


def test_upgrade_creates_every_table_on_postgresql(pg_settings: Settings) -> None:
    assert migrate.upgrade(pg_settings) == "created"
    assert migrate.current_tables(pg_settings) >= TABLES
    assert migrate.upgrade(pg_settings) == "current"


def test_migrations_match_the_models_on_postgresql(pg_settings: Settings) -> None:
    migrate.upgrade(pg_settings)
    engine = create_engine(migrate.sync_url(pg_settings))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_downgrade_to_nothing_and_up_again_on_postgresql(pg_settings: Settings) -> None:
    migrate.upgrade(pg_settings)
    engine = create_engine(migrate.sync_url(pg_settings))
    try:
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "base")
    finally:
        engine.dispose()
    assert migrate.current_tables(pg_settings) == {"alembic_version"}
    migrate.upgrade(pg_settings)
    assert migrate.current_tables(pg_settings) >= TABLES


#: (table, column): keys that are BIGINT on PostgreSQL, INTEGER (64 bits) on SQLite.
WIDER_ON_POSTGRESQL = [("message_count_changes", "id")]


def test_both_engines_get_the_same_schema(pg_settings: Settings, settings: Settings) -> None:
    """Tables, columns (generic type, nullability), keys, unique sets and indexes (with the
    rows a partial index holds) are the same on SQLite and on PostgreSQL."""
    migrate.upgrade(settings)
    migrate.upgrade(pg_settings)
    sqlite, postgresql = schema(settings), schema(pg_settings)
    # The one deliberate difference: a key whose sequence runs through billions of values
    # is BIGINT on PostgreSQL and SQLite's INTEGER PRIMARY KEY (the 64-bit rowid) there.
    for table, column in WIDER_ON_POSTGRESQL:
        assert postgresql[table]["columns"][column] == ("BigInteger()", False)
        postgresql[table]["columns"][column] = ("Integer()", False)
    assert sqlite.keys() == postgresql.keys()
    for table in sqlite:
        assert sqlite[table] == postgresql[table], table


def schema(settings: Settings) -> dict[str, dict[str, Any]]:
    """The engine-neutral description of every table of the database."""
    engine = create_engine(migrate.sync_url(settings))
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            return {
                table: describe(inspector, table)
                for table in inspector.get_table_names()
                if table != "alembic_version"
            }
    finally:
        engine.dispose()


def describe(inspector: Any, table: str) -> dict[str, Any]:
    columns = {c["name"]: (generic(c["type"]), c["nullable"]) for c in inspector.get_columns(table)}
    foreign = sorted(
        (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]),
         (f.get("options") or {}).get("ondelete", "").upper() or None)
        for f in inspector.get_foreign_keys(table)
    )  # fmt: skip
    unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
    indexes = set()
    for index in inspector.get_indexes(table):
        columns_of = tuple(index["column_names"])
        if index["unique"] and not where_of(index):
            unique.add(columns_of)  # SQLite names some unique constraints as unique indexes
        else:
            indexes.add((index["name"], columns_of, bool(index["unique"]), where_of(index)))
    return {
        "columns": columns,
        "primary key": tuple(inspector.get_pk_constraint(table)["constrained_columns"]),
        "foreign keys": foreign,
        "unique": sorted(unique),
        "indexes": sorted(indexes),
    }


def generic(column_type: Any) -> str:
    """The type's engine-neutral name: `VARCHAR(36)` on both; SQLite's and PostgreSQL's
    spellings of a timestamp, boolean or blob read the same."""
    text = repr(column_type.as_generic())
    return re.sub(r"\s+", "", text)


def where_of(index: dict[str, Any]) -> str | None:
    """A partial index's condition, spelled the same whatever the engine printed."""
    options = index.get("dialect_options", {})
    where = options.get("sqlite_where")
    if where is None:
        where = options.get("postgresql_where")
    if where is None:
        return None
    text = str(where).lower().replace("(", "").replace(")", "").replace('"', "")
    # PostgreSQL's casts of columns and literals (a type's name only: not the words after)
    text = re.sub(r"::(character varying|timestamp with(out)? time zone|[a-z]+)", "", text)
    return re.sub(r"\s+", " ", text).strip()


def db_upgrade(url: str, tmp_path: Path) -> tuple[int, str]:
    """`smsgw db upgrade` against `url`, in a process of its own: (exit status, output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
    env |= {"SMSGW_DATA_DIR": str(tmp_path / "data"), "SMSGW_DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "smsgw", "db", "upgrade"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def test_db_upgrade_creates_the_schema_on_postgresql_then_finds_it_current(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    pg_cluster.add_user("upgrader", "pa:ss/w@rd")
    url = pg_cluster.create_database(owner="upgrader")
    url = url.replace("postgres@", "upgrader:pa%3Ass%2Fw%40rd@")
    status, output = db_upgrade(url, tmp_path)
    assert status == 0, output
    assert "database created: postgresql://upgrader:***@127.0.0.1:" in output
    assert "pa:ss" not in output and "pa%3A" not in output
    status, output = db_upgrade(url, tmp_path)
    assert (status, "database is up to date") == (0, output.strip().split(":")[0]), output


def test_a_migration_the_server_refuses_is_said_in_one_line(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    pg_cluster.add_user("guest", "guest")  # owns nothing: may not create tables in public
    url = pg_cluster.create_database().replace("postgres@", "guest:guest@")
    status, output = db_upgrade(url, tmp_path)
    assert status == 1, output
    assert output.startswith("error: the migration failed: permission denied for schema"), output
    assert len(output.strip().splitlines()) == 1, output


@pytest.mark.parametrize("problem", ["wrong password", "no such database", "nothing listening"])
def test_db_upgrade_says_in_one_line_why_postgresql_cannot_be_used(
    pg_cluster: Cluster, tmp_path: Path, problem: str
) -> None:
    pg_cluster.add_user(f"u_{abs(hash(problem))}", "right")
    user = f"u_{abs(hash(problem))}"
    port = pg_cluster.port
    url, expected = {
        "wrong password": (
            f"postgresql://{user}:wrong@127.0.0.1:{port}/postgres",
            f"PostgreSQL at 127.0.0.1:{port} refused user '{user}': wrong password",
        ),
        "no such database": (
            f"postgresql://postgres@127.0.0.1:{port}/nowhere",
            f"the database 'nowhere' does not exist on PostgreSQL at 127.0.0.1:{port}",
        ),
        "nothing listening": (
            f"postgresql://postgres@127.0.0.1:{closed_port()}/smsgw",
            "cannot reach PostgreSQL at 127.0.0.1:",
        ),
    }[problem]
    status, output = db_upgrade(url, tmp_path)
    assert status == 2, output
    assert expected in output
    assert len(output.strip().splitlines()) == 1, output
    assert "wrong@" not in output


def closed_port() -> int:
    """A port nothing listens on (bound, then closed at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_nodes_starting_together_migrate_one_after_the_other(pg_settings: Settings) -> None:
    """Every node migrates at start: two at once must not both create the schema."""
    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(lambda _: migrate.upgrade(pg_settings), range(2)))
    assert outcomes == ["created", "current"]  # the later one found it done
    assert migrate.revisions_of(pg_settings) == set(migrate.head_revisions())


def test_without_the_driver_the_answer_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from smsgw.db import postgres

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    problem = postgres.problem_with("postgresql://smsgw@127.0.0.1:5432/smsgw")
    assert problem is not None
    assert "pip install 'smsgw[postgresql]'" in problem
