"""`smsgw devices ...`: the phones of an account."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from smsgw.accounts import service as accounts
from smsgw.cli.common import console, run
from smsgw.db.engine import Database
from smsgw.devices import appversion
from smsgw.devices import service as devices
from smsgw.devices.repository import DeviceRecord
from smsgw.domain.clock import format_timestamp

app = typer.Typer(help="Phones.", no_args_is_help=True)


@app.command("list")
def list_devices(
    user: Annotated[str, typer.Option("--user", "-u", help="The account (login).")],
) -> None:
    """List USER's phones with their SIM cards, app version and when they were last seen
    (`polls only` after the version: this app version opens no event stream, docs/phones.md)."""

    async def action(db: Database) -> list[DeviceRecord]:
        return await devices.list_devices(db, await accounts.user_id_of(db, user))

    found = run(action)
    table = Table(
        "id", "name", "SIM cards", "app", "last seen", "registered",
        title=f"{len(found)} phone(s)",
    )  # fmt: skip
    for device in found:
        sims = ", ".join(
            f"{c.get('simNumber')}: {c.get('carrierName') or c.get('phoneNumber') or '?'}"
            for c in device.sim_cards or []
        )
        table.add_row(
            device.id,
            device.name or "",
            sims or "-",
            _app(device),
            format_timestamp(device.last_seen),
            format_timestamp(device.created_at),
        )
    console.print(table)


def _app(device: DeviceRecord) -> str:
    version = device.app_version or "-"
    polls = appversion.polls_only(device.app_version, device.push_token)
    return f"{version} (polls only)" if polls else version
