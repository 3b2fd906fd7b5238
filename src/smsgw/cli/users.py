"""`smsgw users ...`: account management."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from smsgw.cli.common import JsonOption, print_json, run, say, show, table

if TYPE_CHECKING:
    from smsgw.accounts.service import NewAccount
    from smsgw.db.engine import Database

app = typer.Typer(help="Accounts that may use the API.", no_args_is_help=True)

PasswordOption = Annotated[
    str | None,
    typer.Option(help="The password; a strong one is generated and printed when omitted."),
]


def _show(account: NewAccount, generated: bool) -> None:
    say(f"login:    {account.login}")
    if generated:
        say(f"password: {account.password}")


@app.command("create")
def create(login: str, password: PasswordOption = None) -> None:
    """Create an account."""
    from smsgw.accounts import service as accounts

    account = run(lambda db: accounts.create_user(db, login, password))
    _show(account, password is None)


@app.command("list")
def list_users(as_json: JsonOption = False) -> None:
    """List accounts."""
    from smsgw.accounts import repository
    from smsgw.domain.clock import format_timestamp

    async def action(db: Database) -> list[repository.UserRow]:
        async with db.read() as conn:  # not accounts.service: it loads what a list needs not
            return await repository.all_users(conn)

    rows = run(action)
    if as_json:
        print_json([{"login": r.login, "createdAt": format_timestamp(r.created_at)} for r in rows])
        return
    listing = table("login", "created", ids=[row.login for row in rows])
    for row in rows:
        listing.add_row(row.login, format_timestamp(row.created_at))
    show(listing)


@app.command("passwd")
def passwd(login: str, password: PasswordOption = None) -> None:
    """Change an account's password; the old one, the account's tokens and its dashboard
    sessions stop working at once."""
    from smsgw.accounts import service as accounts

    async def change(db: Database) -> NewAccount:
        return await accounts.change_password(db, login, password)

    _show(run(change), password is None)


@app.command("delete")
def delete(
    login: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete an account with its devices and messages."""
    from smsgw.accounts import service as accounts
    from smsgw.accounts import sessions

    if not yes:
        typer.confirm(f"Delete {login} with all its devices and messages?", abort=True)

    async def remove(db: Database) -> None:
        user_id = await accounts.user_id_of(db, login)
        await accounts.delete_user(db, login)  # refused while it holds a link for all
        await sessions.end_all(db, user_id)

    run(remove)
    say(f"deleted {login}")
