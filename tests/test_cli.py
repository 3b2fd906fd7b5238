"""The `smsgw` command line: users, send, messages, db, settings errors and `serve`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from smsgw.cli import app
from tests.clients import TLS
from tests.conftest import database_environment, free_port, make_settings


def environment(data_dir: Path) -> dict[str, str]:
    """The environment of an `smsgw` command on the test's database (SQLite in `data_dir`,
    or PostgreSQL)."""
    return {"SMSGW_DATA_DIR": str(data_dir), **database_environment(make_settings(data_dir))}


@pytest.fixture
def cli(tmp_path: Path) -> tuple[CliRunner, dict[str, str]]:
    return CliRunner(), environment(tmp_path / "data")


def invoke(cli: tuple[CliRunner, dict[str, str]], *args: str, code: int = 0) -> str:
    runner, env = cli
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def test_users_create_prints_a_generated_password(cli: tuple[CliRunner, dict[str, str]]) -> None:
    output = invoke(cli, "users", "create", "alice")
    assert "login:    alice" in output
    assert re.search(r"password: [A-Za-z0-9]{20}", output)


def test_users_create_with_a_password_does_not_print_it(
    cli: tuple[CliRunner, dict[str, str]],
) -> None:
    output = invoke(cli, "users", "create", "bob", "--password", "bobs long password")
    assert "bobs long password" not in output


def test_users_list_passwd_and_delete(cli: tuple[CliRunner, dict[str, str]]) -> None:
    invoke(cli, "users", "create", "alice")
    invoke(cli, "users", "create", "bob", "--password", "bobs long password")
    listing = invoke(cli, "users", "list")
    assert "alice" in listing and "bob" in listing
    assert "password: " in invoke(cli, "users", "passwd", "alice")
    invoke(cli, "users", "delete", "bob", "--yes")
    assert "bob" not in invoke(cli, "users", "list")


def test_user_errors_exit_1_with_a_message(cli: tuple[CliRunner, dict[str, str]]) -> None:
    invoke(cli, "users", "create", "alice")
    assert "already taken" in invoke(cli, "users", "create", "alice", code=1)
    assert "no user with login 'ghost'" in invoke(cli, "users", "delete", "ghost", "-y", code=1)
    assert "8 to 128 characters" in invoke(
        cli, "users", "create", "carl", "--password", "short", code=1
    )


def test_send_and_list_messages_as_a_user(cli: tuple[CliRunner, dict[str, str]]) -> None:
    invoke(cli, "users", "create", "alice")
    output = invoke(
        cli, "send", "--user", "alice", "--to", "+12025550100", "--to", "+79161234567",
        "--text", "Hello from the CLI",
    )  # fmt: skip
    assert re.search(r"queued [0-9a-f-]{36} \(Pending\)", output)
    listing = invoke(cli, "messages", "list", "--user", "alice")
    assert "1 message(s)" in listing
    assert "+12025550100" in listing
    assert "Hello from the CLI" not in listing


def test_send_refuses_bad_numbers_and_unknown_users(cli: tuple[CliRunner, dict[str, str]]) -> None:
    invoke(cli, "users", "create", "alice")
    bad = invoke(cli, "send", "--user", "alice", "--to", "555", "--text", "x", code=1)
    assert "has no country code" in bad
    assert "no user" in invoke(
        cli, "send", "-u", "nobody", "--to", "+12025550100", "--text", "x", code=1
    )


def test_db_upgrade_says_created_then_up_to_date(cli: tuple[CliRunner, dict[str, str]]) -> None:
    assert "database created" in invoke(cli, "db", "upgrade")
    if "SMSGW_DATABASE_URL" not in cli[1]:  # SQLite's file, in the data directory
        assert Path(cli[1]["SMSGW_DATA_DIR"], "smsgw.db").exists()
    assert "database is up to date" in invoke(cli, "db", "upgrade")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SMSGW_PORT", "70000", "SMSGW_PORT"),
        ("SMSGW_DEFAULT_REGION", "XX", "unknown region code"),
        ("SMSGW_DATABASE_URL", "mysql://x/y", "unsupported database scheme"),
        ("SMSGW_LOG_LEVEL", "loud", "SMSGW_LOG_LEVEL"),
    ],
)
def test_invalid_settings_exit_2_naming_the_variable(
    cli: tuple[CliRunner, dict[str, str]], name: str, value: str, expected: str
) -> None:
    runner, env = cli
    result = runner.invoke(app, ["users", "list"], env=env | {name: value})
    assert result.exit_code == 2
    assert expected in result.output


def test_a_postgresql_server_that_cannot_be_reached_is_named_in_one_line(
    cli: tuple[CliRunner, dict[str, str]],
) -> None:
    runner, env = cli
    url = f"postgresql://smsgw:pw@127.0.0.1:{free_port()}/smsgw"  # nothing listens there
    result = runner.invoke(app, ["serve"], env=env | {"SMSGW_DATABASE_URL": url})
    assert result.exit_code == 2
    assert "cannot reach PostgreSQL at 127.0.0.1:" in result.output


def test_serve_first_start_prints_an_account_and_a_command_that_work(tmp_path: Path) -> None:
    port = free_port()
    env = os.environ | environment(tmp_path / "data") | {"SMSGW_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "smsgw", "serve"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        output = ""
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        while "Try: curl" not in output and time.monotonic() < deadline:
            output += process.stdout.readline()
        assert "smsgw created the database" in output
        password = re.search(r"password: (\S+)", output)
        assert password, output
        # The example is the real one: this login and password, this host and port.
        login, url = (
            f"admin:{password.group(1)}",
            f"http://127.0.0.1:{port}/api/3rdparty/v1/messages",
        )
        assert f"Try: curl -u {login} {url}" in output
        for _ in range(100):
            try:
                response = httpx.get(url, auth=("admin", password.group(1)), verify=TLS)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert response.status_code == 200
        assert response.json() == []
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    assert process.returncode == 0
