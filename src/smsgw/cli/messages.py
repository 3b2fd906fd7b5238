"""`smsgw send` and `smsgw messages ...`: the messages API from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from smsgw.accounts import repository as users
from smsgw.cli.common import console, run, settings_or_exit
from smsgw.db.engine import Database
from smsgw.domain.clock import format_timestamp
from smsgw.domain.errors import NotFound
from smsgw.domain.states import ProcessingState
from smsgw.messages import service
from smsgw.messages.repository import ListFilter, MessageRecord

app = typer.Typer(help="Messages.", no_args_is_help=True)

UserOption = Annotated[str, typer.Option("--user", "-u", help="Act as this account (login).")]


async def _user_id(db: Database, login: str) -> int:
    async with db.read() as conn:
        user = await users.by_login(conn, login)
    if user is None:
        raise NotFound(f"no user with login {login!r}")
    return user.id


def send(
    user: UserOption,
    to: Annotated[list[str], typer.Option("--to", help="Recipient; repeat for several.")],
    text: Annotated[str, typer.Option(help="Message text.")],
    sim: Annotated[int | None, typer.Option(min=1, max=3, help="SIM slot 1-3.")] = None,
    priority: Annotated[int, typer.Option(min=-128, max=127)] = 0,
    device: Annotated[str | None, typer.Option(help="Send only from this phone.")] = None,
) -> None:
    """Queue an SMS as USER, as the API would."""
    region = settings_or_exit().default_region
    command = service.SendCommand(
        phone_numbers=to, text=text, sim_number=sim, priority=priority, device_id=device
    )

    async def action(db: Database) -> MessageRecord:
        return await service.send(db, region, await _user_id(db, user), command)

    record = run(action)
    console.print(f"queued {record.id} ({record.state})", highlight=False)


@app.command("list")
def list_messages(
    user: UserOption,
    state: Annotated[ProcessingState | None, typer.Option(help="Only this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
) -> None:
    """List USER's messages, newest first."""
    where = ListFilter(state=state.value if state else None, limit=limit)

    async def action(db: Database) -> tuple[list[MessageRecord], int]:
        return await service.list_page(db, await _user_id(db, user), where)

    records, total = run(action)
    table = Table("id", "state", "recipients", "device", "created", title=f"{total} message(s)")
    for record in records:
        numbers = ", ".join(f"{r.phone_number} {r.state}" for r in record.recipients)
        table.add_row(
            record.id,
            record.state,
            numbers,
            record.device_id or "-",
            format_timestamp(record.created_at),
        )
    console.print(table)
