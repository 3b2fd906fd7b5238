"""`smsgw send` and `smsgw messages ...`: the messages API from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from smsgw.cli.common import (
    JsonOption,
    fail,
    print_json,
    run,
    say,
    settings_or_exit,
    show,
    table,
)
from smsgw.domain.states import ProcessingState

if TYPE_CHECKING:
    from smsgw.db.engine import Database
    from smsgw.messages.repository import MessageRecord

app = typer.Typer(help="Messages.", no_args_is_help=True)

UserOption = Annotated[str, typer.Option("--user", "-u", help="Act as this account (login).")]
MessageId = Annotated[str, typer.Argument(metavar="ID", help="The message's id.")]


async def _user_id(db: Database, login: str) -> int:
    from smsgw.accounts import service as accounts

    return await accounts.user_id_of(db, login)


def send(
    user: UserOption,
    text: Annotated[
        str,
        typer.Option(help="Message text; with --csv a template: {{column}} is the row's value."),
    ],
    to: Annotated[
        list[str] | None, typer.Option("--to", help="Recipient; repeat for several.")
    ] = None,
    csv: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            help="Send one message per row of this CSV file (UTF-8, a header row with a "
            "phone column), instead of --to.",
        ),
    ] = None,
    sim: Annotated[int | None, typer.Option(min=1, max=3, help="SIM slot 1-3.")] = None,
    priority: Annotated[
        int,
        typer.Option(
            min=-128, max=127, help="Higher goes first; 100 or more also skips the phone's limits."
        ),
    ] = 0,
    device: Annotated[str | None, typer.Option(help="Send only from this phone (its id).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Queue an SMS as the account --user, as the API would; or, with --csv, one per row of
    a file, with a progress bar, listing the rows not sent (exit status 1 if any)."""
    if (csv is None) == (not to):
        fail("give either --to (one message) or --csv (one message per row)", 2)
    if csv is not None:
        from smsgw.cli.bulk import Options, send_csv

        send_csv(csv, text, Options(user, sim, priority, device, as_json))
        return
    from smsgw.messages import service
    from smsgw.messages.wire import to_state

    region = settings_or_exit().default_region
    command = service.SendCommand(
        phone_numbers=to or [], text=text, sim_number=sim, priority=priority, device_id=device
    )

    async def action(db: Database) -> MessageRecord:
        return await service.send(db, region, await _user_id(db, user), command)

    record = run(action)
    if as_json:
        print_json(to_state(record, include_content=True))
    else:
        say(f"queued {record.id} ({record.state})")


@app.command("list")
def list_messages(
    user: UserOption,
    state: Annotated[ProcessingState | None, typer.Option(help="Only this state.")] = None,
    device: Annotated[str | None, typer.Option(help="Only this phone's (its id).")] = None,
    skip: Annotated[int, typer.Option(min=0, help="Leave out this many newest first.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=100, help="At most this many.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """List the messages of the account --user, newest first (never their text)."""
    from smsgw.messages import service
    from smsgw.messages.repository import ListFilter
    from smsgw.messages.wire import to_state

    where = ListFilter(
        state=state.value if state else None, device_id=device, offset=skip, limit=limit
    )

    async def action(db: Database) -> tuple[list[MessageRecord], int, bool]:
        return await service.list_page(db, await _user_id(db, user), where)

    records, total, _ = run(action)
    if as_json:
        print_json([to_state(record, include_content=False) for record in records])
        return
    shown = f"{skip + 1}-{skip + len(records)} of {total}" if records else f"none of {total}"
    listing = table(
        "id", "state", "recipients", "device", "created",
        title=f"{total} message(s), {shown}", ids=[r.id for r in records],
    )  # fmt: skip
    for record in records:
        listing.add_row(
            record.id,
            record.state,
            ", ".join(f"{r.phone_number} {r.state}" for r in record.recipients),
            record.device_id or "-",
            _timestamp(record),
        )
    show(listing)


def _timestamp(record: MessageRecord) -> str:
    from smsgw.domain.clock import format_timestamp

    return format_timestamp(record.created_at)


@app.command("get")
def get(user: UserOption, message_id: MessageId, as_json: JsonOption = False) -> None:
    """Show a message: its state, each recipient's, and the state history."""
    from smsgw.messages import service

    async def action(db: Database) -> MessageRecord:
        return await service.get(db, await _user_id(db, user), message_id)

    _print_message(run(action), as_json)


@app.command("cancel")
def cancel(user: UserOption, message_id: MessageId, as_json: JsonOption = False) -> None:
    """Cancel a Pending message: Cancelled at once if no phone has it yet, else
    Cancelling until the phone that has it takes note (at its next pull)."""
    from smsgw.messages import service

    async def action(db: Database) -> MessageRecord:
        return await service.cancel(db, await _user_id(db, user), message_id)

    _print_message(run(action), as_json)


def _print_message(record: MessageRecord, as_json: bool) -> None:
    from smsgw.messages.wire import to_state

    state = to_state(record, include_content=True)
    if as_json:
        print_json(state)
        return
    say(f"id:         {record.id}")
    say(f"state:      {record.state}")
    say(f"device:     {record.device_id or '-'}")
    say(f"created:    {state['createdAt']}")
    for recipient in state["recipients"]:
        error = f" ({recipient['error']})" if recipient["error"] else ""
        say(f"recipient:  {recipient['phoneNumber']} {recipient['state']}{error}")
    for name, at in state["states"].items():
        say(f"{name + ':':<11} {at}")
