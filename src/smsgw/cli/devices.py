"""`smsgw devices ...`: the phones of an account."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from smsgw.cli import virtual
from smsgw.cli.common import JsonOption, print_json, run, say, show, table

if TYPE_CHECKING:
    from smsgw.db.engine import Database
    from smsgw.devices.repository import DeviceRecord

app = typer.Typer(help="Phones (the same commands as `smsgw phones`).", no_args_is_help=True)

UserOption = Annotated[str, typer.Option("--user", "-u", help="The account (login).")]


def _wire(device: DeviceRecord) -> dict[str, Any]:
    """A phone as `GET /devices` shows it (but for `connected`, which only a server knows)."""
    from smsgw.domain.clock import format_timestamp

    return {
        "id": device.id,
        "name": device.name or "",
        "createdAt": format_timestamp(device.created_at),
        "updatedAt": format_timestamp(device.updated_at),
        "lastSeen": format_timestamp(device.last_seen),
        "simCards": device.sim_cards or None,
        "appVersion": device.app_version,
        "virtual": device.virtual,
    }


def _app(device: DeviceRecord) -> str:
    """The app version, marked when that release only polls (docs/phones.md); `virtual`
    for a virtual phone."""
    from smsgw.devices import appversion

    if device.virtual:
        return "virtual (no real SMS)"
    version = device.app_version or "-"
    polls = appversion.polls_only(device.app_version, device.push_token)
    return f"{version} (polls only)" if polls else version


@app.command("list")
def list_devices(user: UserOption, as_json: JsonOption = False) -> None:
    """List the phones of the account --user: SIM cards, app version (`polls only` after it:
    that release opens no event stream, docs/phones.md; `virtual` for a virtual phone),
    when last seen."""
    from smsgw.accounts import service as accounts
    from smsgw.devices import service as devices

    async def action(db: Database) -> list[DeviceRecord]:
        return await devices.list_devices(db, await accounts.user_id_of(db, user))

    records = run(action)
    found = [_wire(device) for device in records]
    if as_json:
        print_json(found)
        return
    listing = table(
        "id", "name", "SIM cards", "app", "last seen", "registered",
        title=f"{len(found)} phone(s)", ids=[d["id"] for d in found],
    )  # fmt: skip
    for device, record in zip(found, records, strict=True):
        sims = ", ".join(
            f"{c.get('simNumber')}: {c.get('carrierName') or c.get('phoneNumber') or '?'}"
            for c in device["simCards"] or []
        )
        listing.add_row(
            device["id"], device["name"], sims or "-", _app(record), device["lastSeen"],
            device["createdAt"],
        )  # fmt: skip
    show(listing)


@app.command("delete")
def delete(
    user: UserOption,
    device_id: Annotated[str, typer.Argument(metavar="ID", help="The phone's id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a phone of the account --user: its messages not yet sent go back to the queue (those
    pinned to it fail); the phone must sign in again to serve."""
    from smsgw.accounts import service as accounts
    from smsgw.devices import service as devices

    if not yes:
        typer.confirm(f"Delete phone {device_id} of {user}?", abort=True)

    async def action(db: Database) -> None:
        await devices.delete(db, await accounts.user_id_of(db, user), device_id)

    run(action)
    say(f"deleted phone {device_id}")


app.command("add-virtual")(virtual.add_virtual)
app.command("inject")(virtual.inject)
