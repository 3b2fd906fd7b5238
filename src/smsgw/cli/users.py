"""`smsgw users ...`: account management."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from smsgw.accounts import service as accounts
from smsgw.cli.common import console, run
from smsgw.db.engine import Database
from smsgw.domain.clock import format_timestamp
from smsgw.web import sessions

app = typer.Typer(help="Accounts that may use the API.", no_args_is_help=True)

PasswordOption = Annotated[
    str | None,
    typer.Option(help="The password; a strong one is generated and printed when omitted."),
]


def _show(account: accounts.NewAccount, generated: bool) -> None:
    console.print(f"login:    {account.login}", highlight=False)
    if generated:
        console.print(f"password: {account.password}", highlight=False)


@app.command("create")
def create(login: str, password: PasswordOption = None) -> None:
    """Create an account."""
    account = run(lambda db: accounts.create_user(db, login, password))
    _show(account, password is None)


@app.command("list")
def list_users() -> None:
    """List accounts."""
    rows = run(accounts.list_users)
    table = Table("login", "created")
    for row in rows:
        table.add_row(row.login, format_timestamp(row.created_at))
    console.print(table)


@app.command("passwd")
def passwd(login: str, password: PasswordOption = None) -> None:
    """Change an account's password; the old one, the account's tokens and its dashboard
    sessions stop working at once."""

    async def change(db: Database) -> accounts.NewAccount:
        user_id = await accounts.user_id_of(db, login)
        account = await accounts.change_password(db, login, password)
        await sessions.end_all(db, user_id)
        return account

    _show(run(change), password is None)


@app.command("delete")
def delete(
    login: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete an account with its devices and messages."""
    if not yes:
        typer.confirm(f"Delete {login} with all its devices and messages?", abort=True)

    async def remove(db: Database) -> None:
        user_id = await accounts.user_id_of(db, login)
        await sessions.end_all(db, user_id)
        await accounts.delete_user(db, login)

    run(remove)
    console.print(f"deleted {login}", highlight=False)
