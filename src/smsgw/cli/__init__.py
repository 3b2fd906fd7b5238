"""The `smsgw` command line: serve, db, users, tokens, send, messages, devices."""

from __future__ import annotations

import typer

from smsgw.cli import db, devices, messages, serve, tokens, users

app = typer.Typer(
    name="smsgw",
    help="smsgw: a self-hosted SMS gateway.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
app.command("send")(messages.send)
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(messages.app, name="messages")
app.add_typer(devices.app, name="devices")
app.add_typer(tokens.app, name="tokens")


def main() -> None:
    app()
