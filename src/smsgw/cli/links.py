"""`smsgw links ...`: carrier links (docs/links.md)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from smsgw.cli.common import JsonOption, fail, print_json, run, say, show, table

if TYPE_CHECKING:
    from smsgw.db.engine import Database
    from smsgw.links.repository import LinkRecord

app = typer.Typer(help="Carrier links: SMPP to an operator's SMSC.", no_args_is_help=True)
add_app = typer.Typer(help="Add a carrier link.", no_args_is_help=True)
app.add_typer(add_app, name="add")

UserOption = Annotated[str, typer.Option("--user", "-u", help="The account (login).")]


def _password(from_stdin: bool) -> str:
    """The password, read from standard input (its first line): never on the command line,
    where other users of the machine and the shell's history would see it."""
    if not from_stdin:
        fail("--password-stdin is required: give the password on standard input")
    line = sys.stdin.readline()
    if not line:  # (an empty line is an empty password, given on purpose)
        fail("no password on standard input: --password-stdin reads its first line")
    return line.removesuffix("\n").removesuffix("\r")


#: The options of `links add smpp` named otherwise than their settings.
_OPTION = {"source_addr": "source"} | {
    name: name.replace("_", "-")
    for name in ("system_id", "system_type", "source_ton", "source_npi", "data_coding", "bind_mode")
}


@add_app.command("smpp")
def add_smpp(
    user: UserOption,
    host: Annotated[str, typer.Option(help="The SMSC's host name or address.")],
    port: Annotated[int, typer.Option(help="The SMSC's SMPP port.")],
    system_id: Annotated[str, typer.Option("--system-id", help="The login (system_id).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    name: Annotated[str | None, typer.Option(help="The link's name.")] = None,
    system_type: Annotated[str, typer.Option("--system-type", help="system_type.")] = "",
    source: Annotated[
        str, typer.Option("--source", help="Source address (sender) of every SMS.")
    ] = "",
    source_ton: Annotated[
        int, typer.Option("--source-ton", help="Its TON: 5 alphanumeric, 1 international.")
    ] = 5,
    source_npi: Annotated[
        int, typer.Option("--source-npi", help="Its NPI: 0 unknown, 1 ISDN (E.164).")
    ] = 0,
    throughput: Annotated[
        int, typer.Option(help="submit_sm per second at most, as the carrier contracts.")
    ] = 10,
    window: Annotated[int, typer.Option(help="submit_sm awaiting an answer at most.")] = 10,
    data_coding: Annotated[
        int,
        typer.Option(
            "--data-coding",
            help="The alphabet texts go in when they fit it: 0 (GSM 03.38), 1 (IA5) or 3 "
            "(Latin-1); other texts go as UCS-2.",
        ),
    ] = 0,
    bind_mode: Annotated[
        str,
        typer.Option(
            "--bind-mode",
            help="transceiver (one session) or tx_rx (a transmitter session sends, a receiver "
            "session takes receipts and incoming SMS).",
        ),
    ] = "transceiver",
    all_accounts: Annotated[
        bool,
        typer.Option(
            "--all-accounts",
            help="A link for all accounts: it takes every account's queued messages (each "
            "under its routing rule); --user holds it and gets the incoming SMS no account "
            "sent to before.",
        ),
    ] = False,
) -> None:
    """Add an SMPP link to the account --user: from then on it takes the account's queued
    messages like one more phone (with --all-accounts: every account's). A running server
    binds it (transceiver, or transmitter and receiver: --bind-mode) within seconds; `smsgw
    links list` shows its state."""
    from smsgw.accounts import service as accounts
    from smsgw.links import service as links
    from smsgw.links.schemas import SmppSettings, problems

    password = _password(password_stdin)
    # (spaces around a name or address are no part of it, as for the API and the form)
    host, system_id, system_type, source = (
        text.strip(" ") for text in (host, system_id, system_type, source)
    )
    values: dict[str, Any] = {
        "name": name, "host": host, "port": port, "system_id": system_id,
        "password": password, "system_type": system_type, "source_addr": source,
        "source_ton": source_ton, "source_npi": source_npi, "throughput": throughput,
        "window": window, "data_coding": data_coding, "bind_mode": bind_mode,
    }  # fmt: skip
    broken = problems(values)
    if broken:  # every one, under the option's name
        fail("; ".join(f"--{_OPTION.get(k, k)}: {m.partition(': ')[2]}" for k, m in broken.items()))

    async def action(db: Database) -> str:
        config = SmppSettings(**{k: v for k, v in values.items() if k != "name"})
        user_id = await accounts.user_id_of(db, user)
        return await links.add(db, user_id, user, name, config, all_accounts=all_accounts)

    added = run(action)
    say(f"added SMPP link {'for all accounts ' if all_accounts else ''}{added}")


def _wire(login: str, link: LinkRecord) -> dict[str, Any]:
    """A link as listed: its settings and state, never its password."""
    from smsgw.domain.clock import format_timestamp

    return {
        "id": link.device_id, "user": login, "name": link.name or "", "kind": link.kind,
        "host": link.host, "port": link.port, "systemId": link.system_id,
        "systemType": link.system_type, "source": link.source_addr,
        "sourceTon": link.source_ton, "sourceNpi": link.source_npi,
        "throughput": link.throughput, "window": link.window, "dataCoding": link.data_coding,
        "bindMode": link.bind_mode, "allAccounts": link.all_accounts,
        "state": link.state, "detail": link.detail,
        "since": format_timestamp(link.state_at),
    }  # fmt: skip


@app.command("list")
def list_links(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this account's.")] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print JSON: each link's settings (named as in the API) and state, with its "
            "account (user) and when the state was recorded (since); no password.",
        ),
    ] = False,
) -> None:
    """List the carrier links (of --user, or all) with the state of their session, as the
    server that runs them last recorded it: new, connecting, bound or down (and why)."""
    from smsgw.accounts import service as accounts
    from smsgw.links import service as links

    async def action(db: Database) -> list[tuple[str, LinkRecord]]:
        if user is not None:
            await accounts.user_id_of(db, user)  # a login that is no account's: an error
        found = await links.every(db)
        return [(login, link) for login, link in found if user is None or login == user]

    found = [_wire(login, link) for login, link in run(action)]
    if as_json:
        print_json(found)
        return
    listing = table(
        "id", "user", "name", "SMSC", "system_id", "bind", "state", "since",
        title=f"{len(found)} link(s)", ids=[f["id"] for f in found],
    )  # fmt: skip
    for link in found:
        state = link["state"] + (f": {link['detail']}" if link["detail"] else "")
        holder = link["user"] + (" (all accounts)" if link["allAccounts"] else "")
        listing.add_row(
            link["id"], holder, link["name"], f"{link['host']}:{link['port']}",
            link["systemId"], link["bindMode"], state, link["since"],
        )  # fmt: skip
    show(listing)


@app.command("delete")
def delete(
    link_id: Annotated[str, typer.Argument(metavar="ID", help="The link's id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a carrier link: its queued messages not yet planned go back to the queue (as
    for a deleted phone); a running server unbinds it within seconds."""
    from smsgw.links import service as links

    if not yes:
        typer.confirm(f"Delete link {link_id}?", abort=True)

    async def action(db: Database) -> None:
        await links.delete(db, link_id)

    run(action)
    say(f"deleted link {link_id}")


def _describe(login: str, rule: dict[str, Any]) -> str:
    said = f"{login}: mode {rule['mode']}"
    if rule["prefixes"]:
        said += ", prefixes " + " ".join(rule["prefixes"])
    if rule["failoverAfter"]:
        said += f", failover after {rule['failoverAfter']} s"
    return said


@app.command("routing")
def routing(
    user: UserOption,
    mode: Annotated[
        str | None,
        typer.Option(help="Set the rule: shared, phones, links, prefix or fallback."),
    ] = None,
    prefix: Annotated[
        list[str] | None,
        typer.Option("--prefix", help="Mode prefix: a number prefix such as +44 (repeat it)."),
    ] = None,
    failover_after: Annotated[
        int,
        typer.Option(
            "--failover-after", help="Seconds before the other kind of sender may take it too."
        ),
    ] = 0,
    as_json: JsonOption = False,
) -> None:
    """Show the account's routing rule between its phones and its links, or set it with
    --mode (the whole rule: options left out mean no prefixes, no failover). See
    docs/links.md, "Routing rules"."""
    from smsgw.accounts import service as accounts
    from smsgw.routing import rules

    if mode is None and (prefix or failover_after):
        fail("give --mode too: the rule is set whole (see `smsgw links routing --help`)")

    async def action(db: Database) -> rules.Rule:
        user_id = await accounts.user_id_of(db, user)
        if mode is None:
            return await rules.get(db, user_id)
        return await rules.put(db, user_id, rules.checked(mode, prefix or [], failover_after))

    rule = run(action)
    wire: dict[str, Any] = {"mode": rule.mode.value, "prefixes": list(rule.prefixes)}
    wire["failoverAfter"] = rule.failover_after
    if as_json:
        print_json(wire)
    else:
        say(_describe(user, wire))


@app.command("run")
def run_links() -> None:
    """Run the carrier links in a process of their own, which serves no HTTP, until
    stopped (SIGTERM or Ctrl-C: each link unbinds). Run the API's server processes with
    SMSGW_LINKS=false beside it; the leases make sure one process drives each link. See
    docs/links.md, "A process for the links"."""
    import asyncio
    import signal

    from smsgw.cli.common import (
        configure_logging,
        migrate_quietly,
        settings_or_exit,
        usable_database_or_exit,
    )
    from smsgw.workers.links import run_alone

    settings = settings_or_exit()
    usable_database_or_exit(settings)
    migrate_quietly(settings)
    configure_logging(settings.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print("smsgw links: running the carrier links (no HTTP)", flush=True)
        await run_alone(settings, stop)

    try:  # the event loop uvicorn picks for `smsgw serve` where it is installed
        import uvloop
    except ImportError:  # pragma: no cover - Windows, PyPy
        asyncio.run(main())
    else:
        uvloop.run(main())
