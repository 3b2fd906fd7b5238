"""The `smsgw` command line: serve, db, users, tokens, keys, send, messages, devices (or
phones).

Loading it costs Typer alone: each command imports the application's modules when it runs
(tests/test_cli_fast.py holds it to that), so `smsgw --help` answers at once.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
import typer.core

from smsgw.cli import db, devices, keys, links, messages, tokens, users

_display_type_rich = typer.core.TyperOption.display_type_rich


def _flag_has_no_type(option: typer.core.TyperOption, ctx: Any) -> str | None:
    """Help shows `--yes`, `--json`, `--help` as the flags they are, not as `<bool>` options
    that seem to want a value (Typer's own help would)."""
    return None if option.is_flag and not option.count else _display_type_rich(option, ctx)


typer.core.TyperOption.display_type_rich = _flag_has_no_type  # type: ignore[method-assign,assignment]

app = typer.Typer(
    name="smsgw",
    help="smsgw: a self-hosted SMS gateway.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("serve")
def serve_command(
    host: Annotated[str | None, typer.Option(help="Address to listen on [SMSGW_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [SMSGW_PORT].")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Server processes, one per core [SMSGW_WORKERS].")
    ] = None,
) -> None:
    """Start the gateway (creates or migrates the database first, unless
    SMSGW_AUTO_MIGRATE=false)."""
    from smsgw.cli.serve import serve

    serve(host, port, workers)


app.command("send")(messages.send)
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(messages.app, name="messages")
app.add_typer(devices.app, name="devices")
app.add_typer(devices.app, name="phones", help="Phones, and virtual phones for development.")
app.add_typer(tokens.app, name="tokens")
app.add_typer(keys.app, name="keys")
app.add_typer(links.app, name="links")


def main() -> None:
    app()
