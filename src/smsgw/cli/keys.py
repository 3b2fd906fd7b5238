"""`smsgw keys ...`: the operator creates, lists and revokes accounts' named API keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from smsgw.cli.common import JsonOption, fail, print_json, run, say, show, table

if TYPE_CHECKING:
    from smsgw.apikeys.repository import KeyRow
    from smsgw.apikeys.service import CreatedKey
    from smsgw.db.engine import Database

app = typer.Typer(help="Named API keys of the accounts.", no_args_is_help=True)
UserOption = Annotated[str, typer.Option("--user", "-u", help="The account's login.")]


def _wire(row: KeyRow) -> dict[str, Any]:
    from smsgw.apikeys.schemas import key_info
    from smsgw.domain import clock

    return key_info(row, clock.now()).model_dump(mode="json")


@app.command("create")
def create(
    user: UserOption,
    name: Annotated[str, typer.Option("--name", "-n", help="What the key is for (unique).")],
    scope: Annotated[
        list[str], typer.Option("--scope", "-s", help="A scope of the key; repeat for more.")
    ],
    days: Annotated[
        int | None,
        typer.Option("--expires-in-days", min=1, help="Days until it expires (default: never)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key for an account and print it: it is shown this once, never again."""
    from datetime import timedelta

    from smsgw.accounts import service as accounts
    from smsgw.apikeys import service as keys
    from smsgw.domain import clock

    expires = clock.now() + timedelta(days=days) if days else None

    async def make(db: Database) -> CreatedKey:
        user_id = await accounts.user_id_of(db, user)
        return await keys.create(db, user_id, name.strip(), scope, expires)

    made = run(make)
    if as_json:
        print_json({**_wire(made.row), "key": made.key})
        return
    say(f"created API key {made.row.public_id} ({made.row.name}); copy it now, it is shown once:")
    say(made.key)


@app.command("list")
def list_keys(user: UserOption, as_json: JsonOption = False) -> None:
    """List an account's keys (ids, names, scopes, times, state; never a key), newest first."""
    from smsgw.accounts import service as accounts
    from smsgw.apikeys import service as keys

    async def rows_of(db: Database) -> list[KeyRow]:
        return await keys.list_for_user(db, await accounts.user_id_of(db, user))

    found = [_wire(row) for row in run(rows_of)]
    if as_json:
        print_json(found)
        return
    listing = table(
        "id", "name", "scopes", "created", "last used", "expires", "state",
        ids=[k["id"] for k in found],
    )  # fmt: skip
    for key in found:
        listing.add_row(
            key["id"], key["name"], " ".join(key["scopes"]), key["createdAt"],
            key["lastUsedAt"] or "never", key["expiresAt"] or "never", key["state"],
        )  # fmt: skip
    show(listing)


@app.command("revoke")
def revoke(
    key_id: Annotated[
        str, typer.Argument(metavar="ID", help="The key's id, as `keys list` shows it.")
    ],
) -> None:
    """Revoke a key by its id, at once in every server process."""
    from smsgw.apikeys import service as keys

    if not run(lambda db: keys.revoke_any(db, key_id)):
        fail(f"no live API key {key_id}")
    say(f"revoked API key {key_id}")
