"""`smsgw tokens ...`: the operator lists and revokes users' JWTs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from smsgw.accounts import service as accounts
from smsgw.cli.common import console, fail, run
from smsgw.db.engine import Database
from smsgw.domain import clock
from smsgw.domain.clock import format_timestamp
from smsgw.tokens import service as tokens
from smsgw.tokens.repository import TokenRow

app = typer.Typer(help="JWT access and refresh tokens of the accounts.", no_args_is_help=True)


def _state(row: TokenRow) -> str:
    if row.revoked_at is not None:
        return "revoked " + format_timestamp(row.revoked_at)
    return "expired" if row.expires_at <= clock.now() else "live"


@app.command("list")
def list_tokens(
    user: Annotated[str, typer.Option("--user", "-u", help="The account's login.")],
) -> None:
    """List an account's tokens (ids, scopes, times; never the tokens), newest first."""

    async def rows_of(db: Database) -> list[TokenRow]:
        return await tokens.list_for_user(db, await accounts.user_id_of(db, user))

    # The id is what `tokens revoke` takes: never cut short, whatever the terminal's width.
    table = Table(Column("id", no_wrap=True, min_width=21), "kind")
    table.add_column("scopes", overflow="fold")
    table.add_column("created")
    table.add_column("expires")
    table.add_column("state")
    for row in run(rows_of):
        table.add_row(
            row.id,
            row.token_use,
            " ".join(row.scopes),
            format_timestamp(row.created_at),
            format_timestamp(row.expires_at),
            _state(row),
        )
    console.print(table)


@app.command("revoke")
def revoke(jti: str) -> None:
    """Revoke a token by its id (and the refresh token issued with it), at once everywhere."""
    if not run(lambda db: tokens.revoke_any(db, jti)):
        fail(f"no live token {jti}")
    console.print(f"revoked {jti}", highlight=False)
