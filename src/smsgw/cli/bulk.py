"""`smsgw send --csv FILE --text TEMPLATE`: one message per row of a CSV file, queued as
`POST /messages` queues one, with a progress bar; the rows not sent are listed at the end."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from smsgw.cli.common import fail, print_json, run, say, settings_or_exit

if TYPE_CHECKING:
    from smsgw.bulk.prepare import Prepared, Row
    from smsgw.db.engine import Database

#: Rows submitted at once (about one group-commit transaction: db/engine.py MAX_BATCH).
CHUNK = 256


@dataclass(frozen=True)
class Options:
    user: str
    sim: int | None
    priority: int
    device: str | None
    as_json: bool


@dataclass
class Result:
    row: int
    phone: str
    id: str | None = None
    state: str | None = None
    error: str | None = None


def _prepared(path: Path, text: str, region: str | None) -> Prepared:
    from smsgw.bulk import csvfile
    from smsgw.bulk.prepare import prepare
    from smsgw.domain.errors import DomainError

    try:
        if path.stat().st_size > csvfile.MAX_BYTES:
            fail(f"{path}: the file is larger than {csvfile.MAX_BYTES // (1024 * 1024)} MiB")
        return prepare(path.read_bytes(), text, region)
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}")
    except DomainError as exc:
        fail(f"{path}: {exc.message}")


def _progress() -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True),
    )  # fmt: skip


def _command(row: Row, opts: Options) -> Any:
    from smsgw.messages import service

    return service.SendCommand(
        phone_numbers=[row.phone], text=row.text, sim_number=opts.sim,
        priority=opts.priority, device_id=opts.device,
    )  # fmt: skip


async def _send_rows(
    db: Database, region: str | None, rows: list[Row], opts: Options
) -> list[Result]:
    from smsgw.accounts import service as accounts
    from smsgw.bulk.sending import send_many

    user_id = await accounts.user_id_of(db, opts.user)
    results: list[Result] = []
    with _progress() as progress:
        task = progress.add_task("queueing", total=len(rows))
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            sent = await send_many(db, region, user_id, [_command(row, opts) for row in chunk])
            results += [_result(row, outcome) for row, outcome in zip(chunk, sent, strict=True)]
            progress.advance(task, len(chunk))
    return results


def _result(row: Row, outcome: Any) -> Result:
    from smsgw.domain.errors import DomainError

    if isinstance(outcome, DomainError):
        return Result(row.row, row.phone, error=outcome.message)
    return Result(row.row, row.phone, id=outcome.id, state=outcome.state)


def send_csv(path: Path, text: str, opts: Options) -> None:
    """Check every row first (nothing is sent when the file or the text is unusable), then
    queue the valid rows; exit status 1 when any row was not sent."""
    region = settings_or_exit().default_region
    prepared = _prepared(path, text, region)
    print(
        f"{len(prepared.rows)} row(s) to send ({prepared.parts} SMS part(s)), "
        f"{len(prepared.invalid)} invalid, {prepared.blank} blank",
        file=sys.stderr, flush=True,
    )  # fmt: skip

    async def action(db: Database) -> list[Result]:
        return await _send_rows(db, region, prepared.rows, opts)

    results = run(action) if prepared.rows else []
    results += [Result(i.row, i.phone, error=i.reason) for i in prepared.invalid]
    results.sort(key=lambda r: r.row)
    failed = [r for r in results if r.error is not None]
    if opts.as_json:
        print_json([vars(r) for r in results])
    else:
        _report(len(results) - len(failed), failed)
    if failed:
        raise typer.Exit(1)


def _report(queued: int, failed: list[Result]) -> None:
    say(f"queued {queued} message(s)")
    if failed:
        say(f"not sent: {len(failed)} row(s)")
        for result in failed:
            say(f"  row {result.row}: {result.phone or '(no number)'}: {result.error}")
