"""`smsgw phones add-virtual` and `smsgw phones inject`: virtual phones for development."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from smsgw.cli.common import fail, run, say, settings_or_exit

if TYPE_CHECKING:
    from smsgw.config import Settings
    from smsgw.db.engine import Database

UserOption = Annotated[str, typer.Option("--user", "-u", help="The account (login).")]


def _enabled() -> Settings:
    """The settings, if virtual phones are on; else end the command saying how to turn
    them on (status 1)."""
    from smsgw.virtualphones.errors import VirtualPhonesOff

    settings = settings_or_exit()
    if not settings.virtual_phones_enabled:
        fail(VirtualPhonesOff(settings).message)
    return settings


def add_virtual(
    user: UserOption,
    name: Annotated[str | None, typer.Option(help="The phone's name.")] = None,
    delay: Annotated[
        float, typer.Option(help="Seconds from taking a message to its outcome (0-86400).")
    ] = 2.0,
    outcome: Annotated[
        str,
        typer.Option(
            help="What happens to each message, in turn: delivered, sent, failed or "
            "failed:REASON, or a list cycled per message such as delivered,failed:No service."
        ),
    ] = "delivered",
) -> None:
    """Add a virtual phone to the account --user: it lives inside smsgw and takes the
    account's messages like a real phone, but sends no SMS (docs/phones.md). Off in
    production mode unless SMSGW_VIRTUAL_PHONES=true."""
    from smsgw.accounts import service as accounts
    from smsgw.virtualphones import service as virtual

    settings = _enabled()

    async def action(db: Database) -> str:
        user_id = await accounts.user_id_of(db, user)
        return await virtual.add(db, settings, user_id, user, name, delay, outcome)

    device_id = run(action)
    say(f"added virtual phone {device_id}")


def inject(
    phone: Annotated[str, typer.Option("--phone", help="The virtual phone's id.")],
    sender: Annotated[str, typer.Option("--from", help="Who sent it (a phone number).")],
    text: Annotated[str, typer.Option("--text", help="The message's text.")],
) -> None:
    """Make a virtual phone receive an SMS: it lands in its account's inbox and the
    account's sms:received webhooks fire, as for a real phone's."""
    from smsgw.devices import service as devices
    from smsgw.virtualphones import service as virtual

    settings = _enabled()

    async def action(db: Database) -> str:
        owner = (await devices.get(db, phone)).user_id
        return await virtual.inject(db, settings, owner, phone, sender, text)

    message_id = run(action)
    say(f"phone {phone} received SMS {message_id} from {sender.strip()}")
