"""The same migrations on PostgreSQL 15+: they run, match the models, go down and up again,
and build the schema they build on SQLite (issue 16, first part: the schema on both engines).

Each test gets a database of its own in a cluster the session starts (tests/pgcluster.py).
"""

from __future__ import annotations

import re
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

TABLES = {"users", "devices", "messages", "recipients", "message_states", "system_values"}


@pytest.fixture
def pg_settings(pg_cluster: Cluster, tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", database_url=pg_cluster.create_database())


def test_upgrade_creates_every_table_on_postgresql(pg_settings: Settings) -> None:
    assert migrate.upgrade(pg_settings) == "upgraded"
    assert migrate.current_tables(pg_settings) >= TABLES
    assert migrate.upgrade(pg_settings) == "upgraded"  # idempotent: Alembic finds it at head


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


def test_both_engines_get_the_same_schema(pg_settings: Settings, settings: Settings) -> None:
    """Tables, columns (generic type, nullability), keys, unique sets and indexes (with the
    rows a partial index holds) are the same on SQLite and on PostgreSQL."""
    migrate.upgrade(settings)
    migrate.upgrade(pg_settings)
    sqlite, postgresql = schema(settings), schema(pg_settings)
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
    text = re.sub(r"::[a-z ]+", "", text)  # PostgreSQL's casts of literals
    return re.sub(r"\s+", " ", text).strip()
