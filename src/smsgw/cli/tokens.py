"""`smsgw tokens ...`: the operator lists and revokes users' API tokens (JWTs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from smsgw.cli.common import JsonOption, fail, print_json, run, say, show, table

if TYPE_CHECKING:
    from smsgw.db.engine import Database
    from smsgw.tokens.repository import TokenRow

app = typer.Typer(help="API tokens (JWTs) of the accounts.", no_args_is_help=True)


def _wire(row: TokenRow) -> dict[str, Any]:
    from smsgw.domain import clock
    from smsgw.domain.clock import format_timestamp

    revoked = format_timestamp(row.revoked_at) if row.revoked_at is not None else None
    state = "revoked" if revoked else "expired" if row.expires_at <= clock.now() else "live"
    return {
        "id": row.id,
        "kind": row.token_use,
        "scopes": row.scopes,
        "createdAt": format_timestamp(row.created_at),
        "expiresAt": format_timestamp(row.expires_at),
        "revokedAt": revoked,
        "state": state,
    }


@app.command("list")
def list_tokens(
    user: Annotated[str, typer.Option("--user", "-u", help="The account's login.")],
    as_json: JsonOption = False,
) -> None:
    """List an account's tokens (ids, scopes, times; never the tokens), newest first."""
    from smsgw.accounts import service as accounts
    from smsgw.tokens import service as tokens

    async def rows_of(db: Database) -> list[TokenRow]:
        return await tokens.list_for_user(db, await accounts.user_id_of(db, user))

    found = [_wire(row) for row in run(rows_of)]
    if as_json:
        print_json(found)
        return
    # The id is what `tokens revoke` takes: never cut short, whatever the terminal's width.
    listing = table(
        "id", "kind", "scopes", "created", "expires", "state", ids=[t["id"] for t in found]
    )
    for token in found:
        state = f"revoked {token['revokedAt']}" if token["revokedAt"] else token["state"]
        listing.add_row(
            token["id"], token["kind"], " ".join(token["scopes"]), token["createdAt"],
            token["expiresAt"], state,
        )  # fmt: skip
    show(listing)


@app.command("revoke")
def revoke(
    token_id: Annotated[
        str, typer.Argument(metavar="ID", help="The token's id, as `tokens list` shows it.")
    ],
) -> None:
    """Revoke a token by its id (and the refresh token issued with it), at once everywhere."""
    from smsgw.tokens import service as tokens

    if not run(lambda db: tokens.revoke_any(db, token_id)):
        fail(f"no live token {token_id}")
    say(f"revoked {token_id}")


@app.command("forget-secret")
def forget_secret() -> None:
    """Forget which JWT secret the database's nodes sign with, so that the next node to start
    records its own: for when that secret is lost (tokens made under it stop working)."""
    from smsgw.tokens import rotation

    if run(rotation.forget):
        say("forgot the recorded JWT secret: the next node to start records its own")
    else:
        say("no JWT secret was recorded")
