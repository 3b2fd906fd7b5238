"""`smsgw serve`: run the HTTP server."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI

from smsgw.app import create_app
from smsgw.cli.common import errors, settings_or_exit
from smsgw.config import Settings
from smsgw.db.engine import Database, DatabaseUnsupported


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [SMSGW_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [SMSGW_PORT].")] = None,
) -> None:
    """Start the gateway (applies migrations first, unless SMSGW_AUTO_MIGRATE=false)."""
    settings = settings_or_exit(host=host, port=port)
    try:
        Database(settings)  # fail here, readably, on an unusable database setting
    except DatabaseUnsupported as exc:
        errors.print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    print(f"smsgw listening on http://{settings.host}:{settings.port}", flush=True)
    run_server(create_app(settings), settings)


def run_server(app: FastAPI, settings: Settings) -> None:
    """Serve `app` the way `smsgw serve` does (the benchmarks use it too)."""
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
