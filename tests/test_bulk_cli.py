"""`smsgw send --csv FILE --text TEMPLATE`: one message per row, a progress bar, the rows
not sent listed with their row numbers, exit status 1 when any was not sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smsgw.cli import app
from tests.conftest import database_rows, make_settings
from tests.test_cli import environment

CSV = (
    "name,phone,code\n"
    "Ann,+12025550100,111\n"
    "Bob,555,222\n"
    "\n"
    "Cy,+12025550101,333\n"
    "Di,+12025550102,444,extra\n"
)


@pytest.fixture
def cli(tmp_path: Path) -> tuple[CliRunner, dict[str, str], Path]:
    runner, env = CliRunner(), environment(tmp_path / "data")
    assert runner.invoke(app, ["users", "create", "alice"], env=env).exit_code == 0
    return runner, env, tmp_path


def invoke(cli: tuple[CliRunner, dict[str, str], Path], *args: str) -> tuple[int, str, str]:
    runner, env, _ = cli
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def texts(tmp_path: Path) -> list[tuple[str, str]]:
    settings = make_settings(tmp_path / "data")
    sql = (
        "SELECT r.phone_number, m.text FROM messages m JOIN recipients r ON r.message_id = m.id"
        " ORDER BY r.phone_number"
    )
    return [(row[0], row[1]) for row in database_rows(settings, sql)]


def test_rows_are_queued_with_their_values_and_the_bad_ones_listed(
    cli: tuple[CliRunner, dict[str, str], Path],
) -> None:
    csv = cli[2] / "people.csv"
    csv.write_text(CSV)
    code, out, err = invoke(
        cli, "send", "-u", "alice", "--csv", str(csv), "--text", "Hi {{ name }}, code {{code}}"
    )
    assert code == 1, out + err
    assert "2 row(s) to send (2 SMS part(s)), 2 invalid, 1 blank" in err
    assert "queueing" in err and "2/2" in err  # Rich's progress bar
    assert "queued 2 message(s)" in out
    assert "not sent: 2 row(s)" in out
    assert "row 3: 555: phone: '555' has no country code" in out
    assert "row 6: (no number): 4 fields, but the header names 3 columns" in out
    assert texts(cli[2]) == [
        ("+12025550100", "Hi Ann, code 111"),
        ("+12025550101", "Hi Cy, code 333"),
    ]


def test_all_rows_sent_exits_0_and_json_lists_each_row(
    cli: tuple[CliRunner, dict[str, str], Path],
) -> None:
    csv = cli[2] / "ok.csv"
    csv.write_bytes("\ufeffNumber;Name\n+12025550100;Zoë\n".encode())
    code, out, err = invoke(
        cli, "send", "-u", "alice", "--csv", str(csv), "--text", "Hi {{Name}}", "--json"
    )
    assert code == 0, out + err
    (row,) = json.loads(out)
    assert row["row"] == 2 and row["phone"] == "+12025550100" and row["state"] == "Pending"
    assert row["error"] is None and len(row["id"]) == 36
    assert texts(cli[2]) == [("+12025550100", "Hi Zoë")]


def test_an_unknown_column_sends_nothing(cli: tuple[CliRunner, dict[str, str], Path]) -> None:
    csv = cli[2] / "people.csv"
    csv.write_text(CSV)
    code, _, err = invoke(cli, "send", "-u", "alice", "--csv", str(csv), "--text", "{{nme}}")
    assert code == 1
    assert (
        "error: " in err
        and "no such column for {{nme}} (the file's columns: name, phone, code)" in err
    )
    assert texts(cli[2]) == []


def test_csv_and_to_go_apart(cli: tuple[CliRunner, dict[str, str], Path]) -> None:
    code, _, err = invoke(cli, "send", "-u", "alice", "--text", "x")
    assert code == 2 and "give either --to" in err
    missing = str(cli[2] / "missing.csv")
    code, _, err = invoke(cli, "send", "-u", "alice", "--csv", missing, "--text", "x")
    assert code == 1 and "No such file or directory" in err
