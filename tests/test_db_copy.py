"""`smsgw db copy --to postgresql://...`: a SQLite installation, filled by the real gateway
(messages sent and delivered through a simulated phone, SMS and MMS received, webhooks
delivered, tokens, codes, a dashboard session), copied into a new database of the test
session's PostgreSQL cluster: every row as SQLite held it, a gateway on PostgreSQL serving
it and adding rows, and the refusals, each in one line without the password."""

from __future__ import annotations

import asyncio
import os
import pty
import selectors
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine, select
from typer.testing import CliRunner

from smsgw.accounts import service as accounts
from smsgw.bulk import service as bulk
from smsgw.cli import app
from smsgw.db import copy_to_postgres, migrate
from smsgw.db.copy_to_postgres import CopyFailed, tables
from smsgw.db.engine import database_for
from smsgw.db.postgres import connect_arguments, hold_node_lock
from smsgw.virtualphones import service as virtual
from tests.clients import TLS
from tests.conftest import Account, LiveServer, free_port, make_settings, running
from tests.fakes.phone import Credentials, SimulatedPhone
from tests.fakes.receiver import Receiver
from tests.fakes.smsc import Smsc, wait_until
from tests.pgcluster import Cluster
from tests.test_links import add_link, bound, reaches, send
from tests.test_mobile_api import APP, basic
from tests.test_tokens import bearer
from tests.web_support import Dashboard
from tests.webhook_support import (
    MOBILE,
    Api,
    drained,
    eventually,
    hub_settings,
    phone,
    run,
    started,
    until,
)

pytestmark = pytest.mark.one_engine("they choose their engines themselves")  # conftest.py

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
PASSWORD = "s3cret-Passw0rd"


@dataclass
class Installation:
    """A SQLite installation the gateway filled, stopped: what the tests look for in it."""

    data_dir: Path
    owner: Account
    sent: list[str]
    device: Credentials
    token: str  # a JWT issued before the copy
    revoked: str  # one revoked before it


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    """The gateway run on SQLite until every table holds rows, then stopped (read only by
    the tests: each copies it into a database of its own)."""
    data_dir = tmp_path_factory.mktemp("sqlite") / "data"
    receiver = Receiver().start()
    try:
        # SQLite whatever engine the tests run on (SMSGW_TEST_ENGINE): the source of a copy
        # Development mode: a virtual phone (of an account of its own) fills virtual_phones.
        settings = hub_settings(data_dir, database_url=None, mode="development")
        with running(settings) as server:
            owner = server.create_user("owner")
            made: list[Installation] = []
            run(lambda: _fill(server, owner, receiver, made))
            server.create_user("developer")
            asyncio.run(_add_virtual_phone(server, "developer"))
            asyncio.run(_preview_a_bulk_send(server, "developer"))
            _send_through_a_link(server, server.create_user("carrier"))
            web = Dashboard(server)
            assert web.sign_in(owner).status_code == 303  # a dashboard session
            web.close()
    finally:
        receiver.stop()
    with sqlite3.connect(data_dir / "smsgw.db") as conn:
        empty = [t.name for t in tables() if _count(conn, t.name) == 0]
    assert empty == [], "the gateway left these tables empty: the copy of their types is untested"
    return made[0]


#: Messages the carrier account sends through its link (`_send_through_a_link`).
THROUGH_THE_LINK = 1


def _send_through_a_link(server: LiveServer, owner: Account) -> None:
    """An SMPP link (of an account of its own) sends a message by its account's routing
    rule: links, link_parts and routing_rules; and receives the first part of a long SMS
    whose second part has not come (link_mo_parts, with its bytes)."""
    smsc = Smsc().start()
    try:
        link_id = add_link(server, smsc, owner.login)
        bound(server, link_id)
        with server.client(owner) as client:
            rule = {"mode": "prefix", "prefixes": ["+1", "+44"], "failoverAfter": 60}
            assert client.put("/links/routing", json=rule).status_code == 200
            reaches(client, send(client, "through the carrier"), "Delivered")
            first_half = "050003070201" + b"\x00\xff half".hex()  # part 1 of 2, raw bytes
            assert smsc.mo("4915112345601", hex=first_half, esm="64") == 1
            assert smsc.mo("4915112345601", "a whole one after it") == 1
            wait_until(lambda: len(client.get("/inbox").json()) == 1, what="the whole one")
    finally:
        smsc.stop()


async def _preview_a_bulk_send(server: LiveServer, login: str) -> None:
    """A bulk send's preview: batches and batch_items (a valid row and an invalid one)."""
    db = database_for(server.settings)
    try:
        user_id = await accounts.user_id_of(db, login)
        csv = b"phone,name\n+12025550100,Ann\nnot a number,Bob\n"
        await bulk.preview(db, None, user_id, bulk.Upload("people.csv", csv, "Hi {{name}}"))
    finally:
        await db.dispose()


async def _add_virtual_phone(server: LiveServer, login: str) -> None:
    db = database_for(server.settings)
    try:
        user_id = await accounts.user_id_of(db, login)
        await virtual.add(db, server.settings, user_id, login, outcome="delivered,failed:x")
    finally:
        await db.dispose()


async def _fill(
    server: LiveServer, owner: Account, receiver: Receiver, made: list[Installation]
) -> None:
    api = Api(server, owner)
    try:
        for event in ("sms:received", "mms:downloaded"):
            await api.hook(receiver.url, event)
        await api.key()
        changed = await api.client.patch("/settings", json={"messages": {"limit_period": "PerDay"}})
        assert changed.status_code == 200, changed.text
        device = await started(phone(server, owner))
        await eventually(lambda: {"sms:received", "mms:downloaded"} <= _events_hooked(device))
        try:
            sent = [await api.send(f"hello {i}", ("+12025550100", "+12025550101")) for i in (1, 2)]
            await until(lambda: _all_delivered(api.client, sent))
            device.receive_sms("+12025550111", "héllo ✓ back")
            device.receive_mms("+12025550112", "Holidays", "Look", [("image/png", "cat.png", PNG)])
            device.receive_sms("+12025550113", "STOP")  # an opt-out
            device.ping({"status": "pass", "checks": {"battery:level": {"observedValue": 80}}})
            await eventually(lambda: ("system:ping", 204) in device.webhook_posts)  # health
            await until(lambda: _inbox_total(api.client, 4))
            window = {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}
            assert (await api.client.post("/inbox/refresh", json=window)).status_code == 202
            await until(drained(server.settings))
        finally:
            await device.stop()
        token, revoked = [await _token(api.client) for _ in range(2)]
        assert (await api.client.delete(f"/auth/token/{revoked['id']}")).status_code == 204
        named = {"name": "copied", "scopes": ["messages:read"]}  # a named API key
        assert (await api.client.post("/auth/keys", json=named)).status_code == 201
        async with httpx.AsyncClient(
            base_url=server.url + MOBILE, headers=APP, verify=TLS
        ) as mobile:
            assert (await mobile.get("/user/code", headers=basic(owner))).status_code == 200
        assert device.credentials is not None
        made.append(
            Installation(
                server.settings.data_dir, owner, sent, device.credentials,
                token["access_token"], revoked["access_token"],
            )
        )  # fmt: skip
    finally:
        await api.close()


def _events_hooked(device: SimulatedPhone) -> set[str]:
    return {hook["event"] for hook in device.webhooks}


async def _all_delivered(client: httpx.AsyncClient, ids: list[str]) -> bool:
    states = [(await client.get(f"/messages/{i}")).json()["state"] for i in ids]
    return states == ["Delivered"] * len(ids)


async def _inbox_total(client: httpx.AsyncClient, total: int) -> bool:
    return int((await client.get("/inbox")).headers["X-Total-Count"]) == total


async def _token(client: httpx.AsyncClient) -> dict[str, str]:
    answer = await client.post("/auth/token", json={"scopes": ["messages:read", "messages:list"]})
    assert answer.status_code == 201, answer.text
    body: dict[str, str] = answer.json()
    return body


def _count(conn: sqlite3.Connection | psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
    assert row is not None
    return int(row[0])


def copy(data_dir: Path, *args: str, code: int = 0, **env: str) -> str:
    """`smsgw db copy` with the installation of `data_dir`; its output (both streams)."""
    result = CliRunner().invoke(
        app, ["db", "copy", *args], env={"SMSGW_DATA_DIR": str(data_dir), **env}
    )
    assert result.exit_code == code, result.output
    return result.output


def error_line(output: str) -> str:
    """The one line a refused copy prints."""
    lines = output.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), output
    return lines[-1]


def summary_of(output: str) -> dict[str, tuple[int, int]]:
    """The per-table lines of a copy's output: table -> (rows in SQLite, in PostgreSQL)."""
    found = {}
    for line in output.splitlines():
        match line.split():
            case [table, source, target, *_] if source.isdigit() and target.isdigit():
                found[table] = (int(source), int(target))
    return found


def rows_of(url: str) -> dict[str, list[Any]]:
    """Every row of every table, read with SQLAlchemy's types (so values compare across
    engines: UTC datetimes, booleans, JSON documents, bytes), in key order."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key))]
                for t in tables()
            }
    finally:
        engine.dispose()


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'smsgw.db'}"


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(**connect_arguments(url)) as conn:
        return {t.name: _count(conn, t.name) for t in tables()}


@pytest.fixture
def copied(installation: Installation, pg_cluster: Cluster) -> tuple[str, str]:
    """A new database of the cluster with the installation copied into it: its URL, and
    what the copy printed."""
    target = pg_cluster.create_database()
    return target, copy(installation.data_dir, "--to", target)


def test_a_copy_holds_every_row_as_sqlite_held_it(
    installation: Installation, copied: tuple[str, str]
) -> None:
    target, output = copied
    source = rows_of(sqlite_url(installation.data_dir))
    assert rows_of(target.replace("postgresql://", "postgresql+psycopg://")) == source
    assert summary_of(output) == {t: (len(rows), len(rows)) for t, rows in source.items()}
    assert f"copied {sum(map(len, source.values()))} rows in " in output
    assert "differs" not in output and "error" not in output
    # The message counts are not copied: they are counted afresh from the copied messages.
    with psycopg.connect(**connect_arguments(target)) as conn:
        assert _count(conn, "message_count_changes") == 0
        counted = conn.execute(
            "SELECT user_id, coalesce(device_id, ''), state, count(*) FROM messages "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ).fetchall()
        kept = conn.execute(
            "SELECT user_id, device_id, state, n FROM message_counts ORDER BY 1, 2, 3"
        ).fetchall()
        assert counted and kept == counted


def test_a_gateway_on_the_copy_serves_its_data_and_adds_rows(
    installation: Installation, copied: tuple[str, str]
) -> None:
    target, _ = copied
    before = counts(target)
    # A node with the same data directory (its JWT secret), on PostgreSQL.
    settings = make_settings(installation.data_dir, database_url=target)
    with running(settings) as server, server.client(installation.owner) as api:
        first = api.get(f"/messages/{installation.sent[0]}").json()
        listed = api.get("/messages", params={"limit": 100})
        owners = before["messages"] - THROUGH_THE_LINK  # the carrier account's are not the owner's
        assert int(listed.headers["X-Total-Count"]) == len(listed.json()) == owners
        assert first["state"] == "Delivered"  # the copied password verified, the rows read
        assert [r["state"] for r in first["recipients"]] == ["Delivered", "Delivered"]
        inbox = api.get("/inbox", params={"type": "MMS_DOWNLOADED", "includeAttachments": "true"})
        [mms] = inbox.json()
        png = api.get(f"/inbox/{mms['id']}/attachments/{mms['attachments'][0]['partId']}")
        assert png.content == PNG
        [opted] = api.get("/opt-outs").json()
        assert opted["phoneNumber"] == "+12025550113" and opted["source"] == "sms"
        assert api.post("/opt-outs", json={"phoneNumber": "+12025550114"}).status_code == 201
        for token, status in ((installation.token, 200), (installation.revoked, 401)):
            with bearer(server, token) as client:
                assert client.get("/messages").status_code == status
        web = Dashboard(server)
        assert web.sign_in(installation.owner).status_code == 303
        web.close()
        # New rows get new keys: every sequence starts past the copied keys.
        assert server.create_user("newcomer").login == "newcomer"
        hooked = api.post("/webhooks", json={"url": "https://example.org/h", "event": "sms:sent"})
        assert hooked.status_code == 201, hooked.text
        body = {"phoneNumbers": ["+12025550102"], "textMessage": {"text": "after the copy"}}
        sent = api.post("/messages", json=body)
        assert sent.status_code == 200, sent.text
        run(lambda: _delivered_by_the_copied_phone(server, installation, sent.json()["id"]))
    after = counts(target)
    for table in ("users", "webhooks", "messages", "recipients", "message_states", "event_log"):
        assert after[table] > before[table], table


async def _delivered_by_the_copied_phone(
    server: LiveServer, installation: Installation, message_id: str
) -> None:
    device = SimulatedPhone(server.url + MOBILE, credentials=installation.device)
    await device.start()  # its token, copied, still signs it in
    api = Api(server, installation.owner)
    try:
        await until(lambda: _all_delivered(api.client, [message_id]))
    finally:
        await api.close()
        await device.stop()


def test_a_target_with_rows_is_refused_and_left_as_it_was(
    installation: Installation, copied: tuple[str, str]
) -> None:
    target, _ = copied
    filled = counts(target)
    line = error_line(copy(installation.data_dir, "--to", target, code=1))
    assert line.startswith("error: the target database already has rows (in system_values, ")
    assert counts(target) == filled


@pytest.mark.parametrize(
    ("to", "said"),
    [
        ("sqlite:///elsewhere.db", "not a sqlite:// URL"),
        (f"mysql://smsgw:{PASSWORD}@127.0.0.1/smsgw", "not a mysql:// URL"),
        ("smsgw.example.org", "not no URL"),
    ],
)
def test_a_target_that_is_not_postgresql_is_refused(
    installation: Installation, to: str, said: str
) -> None:
    line = error_line(copy(installation.data_dir, "--to", to, code=2))
    assert line.startswith("error: --to takes a PostgreSQL URL") and said in line
    assert PASSWORD not in line


def test_an_unreachable_or_refusing_target_is_one_line_without_its_password(
    installation: Installation, pg_cluster: Cluster
) -> None:
    nowhere = f"postgresql://smsgw:{PASSWORD}@127.0.0.1:{free_port()}/smsgw"
    line = error_line(copy(installation.data_dir, "--to", nowhere, code=2))
    assert line.startswith("error: cannot reach PostgreSQL at 127.0.0.1:") and "(see --to)" in line
    assert PASSWORD not in line
    user = f"u{uuid.uuid4().hex[:8]}"
    pg_cluster.add_user(user, "the-right-one")
    wrong = f"postgresql://{user}:{PASSWORD}@127.0.0.1:{pg_cluster.port}/postgres"
    output = copy(installation.data_dir, "--to", wrong, code=2)
    assert f"refused user '{user}': wrong password" in error_line(output)
    assert PASSWORD not in output
    missing = pg_cluster.url("no_such_database")
    line = error_line(copy(installation.data_dir, "--to", missing, code=2))
    assert "the database 'no_such_database' does not exist" in line


def test_the_password_is_never_printed_by_a_copy(
    installation: Installation, pg_cluster: Cluster
) -> None:
    target = pg_cluster.create_database()  # trust authentication: any password is taken
    with_password = target.replace("postgres@", f"postgres:{PASSWORD}@")
    output = copy(installation.data_dir, "--to", with_password)
    assert "to postgresql://postgres:***@127.0.0.1:" in output and PASSWORD not in output


def test_a_source_that_is_not_a_current_sqlite_installation_is_refused(
    installation: Installation, pg_cluster: Cluster, tmp_path: Path
) -> None:
    target = pg_cluster.create_database()
    line = error_line(copy(installation.data_dir, "--to", target, code=2,
                           SMSGW_DATABASE_URL=target.replace("@", f":{PASSWORD}@")))  # fmt: skip
    assert line.startswith("error: db copy reads a SQLite database; SMSGW_DATABASE_URL names ")
    assert PASSWORD not in line
    nothing = tmp_path / "nothing"
    line = error_line(copy(nothing, "--to", target, code=1))
    assert line == f"error: no SQLite database at {nothing / 'smsgw.db'}"
    assert not nothing.exists()  # not created by looking
    older = make_settings(tmp_path / "older", database_url=None)  # SQLite, as any source
    migrate.upgrade(older, "0008")
    line = error_line(copy(older.data_dir, "--to", target, code=1))
    assert "is not this smsgw's newest: run `smsgw db upgrade` on it first" in line
    # Refused before anything was done to the target: not even its schema.
    assert migrate.current_tables(make_settings(tmp_path / "t", database_url=target)) == set()


def test_a_target_of_a_newer_smsgw_is_refused_in_one_line(
    installation: Installation, pg_cluster: Cluster
) -> None:
    target = pg_cluster.create_database()
    migrate.upgrade(make_settings(Path("unused"), database_url=target))
    with psycopg.connect(**connect_arguments(target)) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    line = error_line(copy(installation.data_dir, "--to", target, code=1))
    assert line.startswith("error: the migration failed: ") and "9999_from_the_future" in line


def test_a_target_a_node_serves_is_refused(installation: Installation, pg_cluster: Cluster) -> None:
    target = pg_cluster.create_database()
    node = hold_node_lock(target)
    assert node is not None
    with node:
        line = error_line(copy(installation.data_dir, "--to", target, code=1))
    assert line == "error: an smsgw node is serving on the target database: stop it first"


def _writable_copy(installation: Installation, into: Path) -> Path:
    """The installation's file copied (SQLite's backup), to write into without changing
    the module's own."""
    path = into / "smsgw.db"
    with sqlite3.connect(installation.data_dir / "smsgw.db") as source:
        destination = sqlite3.connect(path)
        source.backup(destination)
        destination.close()
    return path


class WritesMidway:
    """A progress that, as the copy reaches `messages`, has another connection write the
    file: a gateway left running."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def start(self, rows: int) -> None:
        pass

    def table(self, name: str) -> None:
        if name == "messages":
            with sqlite3.connect(self.path) as conn:
                conn.execute("UPDATE users SET login = login")

    def advance(self, rows: int) -> None:
        pass


def test_a_source_written_during_the_copy_leaves_the_target_empty(
    installation: Installation, pg_cluster: Cluster, tmp_path: Path
) -> None:
    path = _writable_copy(installation, tmp_path)
    target = pg_cluster.create_database()
    migrate.upgrade(make_settings(tmp_path / "unused", database_url=target))
    with pytest.raises(CopyFailed, match="the SQLite database was written while it was copied"):
        copy_to_postgres.copy(path, target, WritesMidway(path))
    assert set(counts(target).values()) == {0}


def test_rows_lost_on_the_way_fail_the_copy_naming_the_table(
    installation: Installation, pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_table = copy_to_postgres._copy_table

    def losing_recipients(source: Any, target: Any, table: Any, progress: Any) -> None:
        if table.name != "recipients":
            copy_table(source, target, table, progress)

    monkeypatch.setattr(copy_to_postgres, "_copy_table", losing_recipients)
    target = pg_cluster.create_database()
    output = copy(installation.data_dir, "--to", target, code=1)
    assert error_line(output) == (
        "error: the rows copied differ from the source's in recipients, nothing was copied"
    )
    assert summary_of(output)["recipients"] == (4 + THROUGH_THE_LINK, 0) and "differs" in output
    assert set(counts(target).values()) == {0}


def test_a_terminal_shows_a_progress_bar_then_the_summary(
    installation: Installation, pg_cluster: Cluster
) -> None:
    target = pg_cluster.create_database()
    leader, follower = pty.openpty()
    env = {**os.environ, "SMSGW_DATA_DIR": str(installation.data_dir), "COLUMNS": "100"}
    process = subprocess.Popen(
        [sys.executable, "-m", "smsgw", "db", "copy", "--to", target],
        stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env,
    )  # fmt: skip
    os.close(follower)
    shown = _read_all(leader)
    assert process.wait(timeout=60) == 0, shown
    assert "━" in shown  # the bar, drawn while copying
    assert "\nmessages " in shown.replace("\r\n", "\n") and "copied " in shown


def _read_all(fd: int, within: float = 60) -> str:
    """What a terminal showed, until the program closed it."""
    chunks = []
    waiting = selectors.DefaultSelector()
    waiting.register(fd, selectors.EVENT_READ)
    try:
        while waiting.select(within):
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        else:
            raise AssertionError(f"nothing shown for {within} s: {b''.join(chunks)!r}")
    except OSError:  # EIO: the program ended, closing the terminal
        pass
    finally:
        waiting.close()
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")
