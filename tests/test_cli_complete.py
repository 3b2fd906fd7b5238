"""The command line as a new user meets it: fast to load, every command a user reaches for
(get, cancel, delete), JSON output, whole ids, flags that read as flags, one-line errors."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smsgw.accounts import service as accounts
from smsgw.cli import app
from smsgw.db.engine import database_for
from smsgw.devices import service as devices
from tests.conftest import make_settings
from tests.test_cli import environment

HEAVY = ("fastapi", "alembic", "sqlalchemy", "uvicorn", "starlette", "smsgw.app")


def test_loading_the_cli_does_not_load_the_web_app_or_the_database() -> None:
    code = f"import sys, smsgw.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return environment(tmp_path / "data") | {"COLUMNS": "60"}


def invoke(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def add_phone(env: dict[str, str], login: str) -> str:
    async def register() -> str:
        db = database_for(make_settings(Path(env["SMSGW_DATA_DIR"])))
        try:
            user_id = await accounts.user_id_of(db, login)
            return (await devices.register(db, user_id, login, "Pixel", None, None)).device_id
        finally:
            await db.dispose()

    return asyncio.run(register())


def send(env: dict[str, str], *extra: str) -> dict[str, object]:
    output = invoke(
        env, "send", "-u", "alice", "--to", "+12025550100", "--text", "hi", "--json", *extra
    )
    sent: dict[str, object] = json.loads(output)
    return sent


def test_messages_get_and_cancel_with_json(env: dict[str, str]) -> None:
    invoke(env, "users", "create", "alice")
    message = send(env)
    shown = invoke(env, "messages", "get", "-u", "alice", str(message["id"]))
    assert f"id:         {message['id']}" in shown and "+12025550100 Pending" in shown
    cancelled = json.loads(
        invoke(env, "messages", "cancel", "-u", "alice", str(message["id"]), "--json")
    )
    assert cancelled["state"] == "Cancelled" and cancelled["textMessage"] == {"text": "hi"}
    got = json.loads(invoke(env, "messages", "get", "-u", "alice", str(message["id"]), "--json"))
    assert got["state"] == "Cancelled" and got["states"]["Cancelled"].endswith("Z")
    again = invoke(env, "messages", "cancel", "-u", "alice", str(message["id"]), code=1)
    assert "not pending" in again
    assert "message not found" in invoke(env, "messages", "get", "-u", "alice", "nope", code=1)


def test_messages_list_skips_and_prints_json_without_text(env: dict[str, str]) -> None:
    invoke(env, "users", "create", "alice")
    ids = [send(env)["id"] for _ in range(3)]
    listed = json.loads(invoke(env, "messages", "list", "-u", "alice", "--json"))
    assert [m["id"] for m in listed] == ids[::-1]
    assert all("textMessage" not in m for m in listed)
    skipped = json.loads(invoke(env, "messages", "list", "-u", "alice", "--skip", "1", "--json"))
    assert [m["id"] for m in skipped] == ids[::-1][1:]


def test_ids_are_whole_in_a_narrow_or_piped_table(env: dict[str, str]) -> None:
    invoke(env, "users", "create", "alice")
    message_id = str(send(env)["id"])
    phone = add_phone(env, "alice")
    assert message_id in invoke(env, "messages", "list", "-u", "alice")
    assert phone in invoke(env, "devices", "list", "-u", "alice")


def test_devices_list_json_and_delete(env: dict[str, str]) -> None:
    invoke(env, "users", "create", "alice")
    phone = add_phone(env, "alice")
    listed = json.loads(invoke(env, "devices", "list", "-u", "alice", "--json"))
    assert [(d["id"], d["name"]) for d in listed] == [(phone, "Pixel")]
    assert f"deleted phone {phone}" in invoke(
        env, "devices", "delete", "-u", "alice", phone, "--yes"
    )
    assert json.loads(invoke(env, "devices", "list", "-u", "alice", "--json")) == []
    assert "device not found" in invoke(
        env, "devices", "delete", "-u", "alice", phone, "-y", code=1
    )


def test_users_and_tokens_lists_print_json(env: dict[str, str]) -> None:
    invoke(env, "users", "create", "alice")
    users = json.loads(invoke(env, "users", "list", "--json"))
    assert [u["login"] for u in users] == ["alice"] and users[0]["createdAt"].endswith("Z")
    assert json.loads(invoke(env, "tokens", "list", "-u", "alice", "--json")) == []


@pytest.mark.parametrize(
    "command",
    [[], ["users", "delete"], ["messages", "list"], ["devices", "delete"], ["tokens", "revoke"],
     ["send"], ["users", "list"]],
)  # fmt: skip
def test_help_shows_flags_as_flags_and_no_jargon(env: dict[str, str], command: list[str]) -> None:
    shown = invoke(env, *command, "--help")
    assert "<bool>" not in shown and "jti" not in shown.lower()


def test_an_unreachable_postgresql_is_one_line_for_every_command(env: dict[str, str]) -> None:
    """Nothing listens at the address: each command says so in one line, without the
    password (the other reasons: tests/test_migrations_postgresql.py)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    url = {"SMSGW_DATABASE_URL": f"postgresql://smsgw:pw@127.0.0.1:{port}/smsgw"}
    for command in (["users", "list"], ["serve"], ["db", "upgrade"]):
        [line] = invoke(env | url, *command, code=2).strip().splitlines()
        assert line.startswith(f"error: cannot reach PostgreSQL at 127.0.0.1:{port}: "), line
        assert line.endswith("(see SMSGW_DATABASE_URL)") and "pw" not in line and "\t" not in line


def test_an_unusable_data_directory_is_one_line_not_a_traceback(
    env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    (tmp_path / "afile").write_text("not a directory")
    bad = env | {"SMSGW_DATA_DIR": str(tmp_path / "afile" / "data")}
    commands = [["db", "upgrade"], ["users", "list"], ["serve"]]
    said = "error: cannot use the database"
    if "SMSGW_DATABASE_URL" in env:
        # On PostgreSQL the data directory holds no database (`db upgrade` needs none), but
        # what a node keeps on its own disk (a generated JWT secret).
        commands, said = commands[1:], "error: "
        assert invoke(bad, "db", "upgrade", code=0)  # it keeps nothing there
    for command in commands:
        output = invoke(bad, *command, code=2)
        assert len(output.strip().splitlines()) == 1, output
        assert output.startswith(said) and "SMSGW_DATA_DIR" in output


def test_without_auto_migrate_an_old_schema_is_named_not_a_traceback(env: dict[str, str]) -> None:
    manual = env | {"SMSGW_AUTO_MIGRATE": "false"}
    output = invoke(manual, "users", "list", code=2)
    assert output.strip() == (
        "error: the database schema is not the newest: run `smsgw db upgrade` first"
    )
    invoke(manual, "db", "upgrade")
    assert "login" in invoke(manual, "users", "list")


def test_serve_on_a_taken_port_says_how_to_choose_another(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = os.environ | environment(tmp_path / "data") | {"SMSGW_PORT": str(port)}
        result = subprocess.run(
            [sys.executable, "-m", "smsgw", "serve"], env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--port" in result.stderr and "SMSGW_PORT" in result.stderr
