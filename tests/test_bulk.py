"""bulk/: reading CSV files, filling templates, checking rows; and the batch service: a
preview kept and confirmed once, sent in chunks, taken over after a crash without sending a
row twice, pruned when it expires."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from smsgw.accounts import service as accounts
from smsgw.bulk import csvfile, template
from smsgw.bulk import service as bulk
from smsgw.bulk.prepare import Invalid, Row, prepare
from smsgw.config import Settings
from smsgw.db import migrate
from smsgw.db.engine import Database, database_for
from smsgw.domain.errors import Conflict, InvalidInput, NotFound, TooLarge
from smsgw.messages import service as messages
from smsgw.workers import retention
from tests.conftest import CLOCK_START, database_rows, make_settings

T = TypeVar("T")


# Reading the file


def test_a_header_row_names_the_columns_and_the_phone_column_is_found() -> None:
    sheet = csvfile.read(b"Name,Phone Number,code\nAnn,+12025550100,1\n")
    assert sheet.columns == ["Name", "Phone Number", "code"]
    assert sheet.phone_column == "Phone Number"
    assert sheet.rows == [(2, {"Name": "Ann", "Phone Number": "+12025550100", "code": "1"})]


@pytest.mark.parametrize(
    "content",
    [
        b"name;number\nAnn;+12025550100\n",
        b"\xef\xbb\xbfname,number\r\nAnn,+12025550100\r\n",
        b"name\tnumber\nAnn\t+12025550100\n",
        b'"name","number"\n"Ann","+12025550100"',
    ],
)
def test_semicolons_tabs_a_byte_order_mark_and_crlf_are_read(content: bytes) -> None:
    sheet = csvfile.read(content)
    assert sheet.rows == [(2, {"name": "Ann", "number": "+12025550100"})]


def test_quoted_fields_keep_their_separators_and_newlines() -> None:
    sheet = csvfile.read(b'phone,note\n+12025550100,"a, b\nc"\n+12025550101,d\n')
    assert [values["note"] for _, values in sheet.rows] == ["a, b\nc", "d"]


def test_blank_rows_are_counted_short_rows_filled_and_long_rows_listed() -> None:
    sheet = csvfile.read(b"phone,a,b\n\n+12025550100,1\n,,\n+12025550101,1,2,3\n+1202,1,2,,\n")
    assert sheet.blank == 2
    assert sheet.rows == [
        (3, {"phone": "+12025550100", "a": "1", "b": ""}),
        (6, {"phone": "+1202", "a": "1", "b": "2"}),  # empty trailing fields are no data
    ]
    assert sheet.broken == [(5, "4 fields, but the header names 3 columns")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"name,code\nAnn,1\n", "no phone number column"),
        (b"phone,a,a\n", "names the column 'a' twice"),
        (b"phone\n\xff\n", "not UTF-8 text (byte 7)"),
    ],
)
def test_a_file_that_cannot_be_used_is_refused(content: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        csvfile.read(content)


def test_limits_on_size_and_rows() -> None:
    with pytest.raises(TooLarge, match="larger than 2 MiB"):
        csvfile.read(b"phone\n" + b"1" * csvfile.MAX_BYTES)
    rows = b"".join(b"+12025550100\n" for _ in range(csvfile.MAX_ROWS))
    assert len(csvfile.read(b"phone\n" + rows).rows) == csvfile.MAX_ROWS
    with pytest.raises(TooLarge, match="more than 10000 rows"):
        csvfile.read(b"phone\n" + rows + b"+12025550100\n")


# Templates


def test_placeholders_are_filled_by_plain_substitution() -> None:
    text = "Hi {{name}}, {{ code }}! {{name}} {x} {{ name}}"
    assert template.placeholders(text) == ["name", "code"]
    assert template.render(text, {"name": "{{code}}", "code": "{% x %}"}) == (
        "Hi {{code}}, {% x %}! {{code}} {x} {{code}}"
    )


def test_nothing_in_a_template_is_evaluated() -> None:
    text = "{{ 7*7 }} {{ config }} {% if 1 %}x{% endif %}"
    with pytest.raises(InvalidInput, match=r"no such column for \{\{7\*7\}\}, \{\{config\}\}"):
        template.check(text, ["phone"])
    assert template.render("{% if 1 %}x{% endif %}", {}) == "{% if 1 %}x{% endif %}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("  ", "enter the text"),
        ("Hi {{}}", "empty placeholder"),
        ("Hi {{nme}}", r"no such column for \{\{nme\}\} \(the file's columns: phone, name\)"),
        ("x" * 65536, "at most 65535 characters"),
    ],
)
def test_a_template_that_cannot_be_used_is_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        template.check(text, ["phone", "name"])


# Checking rows


def test_each_row_is_checked_as_post_messages_checks_a_message() -> None:
    content = (
        "phone,name\n"
        "+1 202 555 0100,Ann\n"
        "555,Bob\n"
        ",Cy\n"
        "+12025550101,\n"
        "+12025550102," + "€" * 81 + "\n"
    ).encode()
    prepared = prepare(content, "{{name}}", None)
    assert prepared.rows == [
        Row(2, "+12025550100", "Ann", 1),
        Row(6, "+12025550102", "€" * 81, 2),  # extension characters: two septets each
    ]
    assert prepared.invalid == [
        Invalid(3, "555", "phone: '555' has no country code; write it as +<country code>"
                "<number> or set SMSGW_DEFAULT_REGION on the server"),
        Invalid(4, "", "phone: the row has no phone number"),
        Invalid(5, "+12025550101", "text: empty once the placeholders are filled"),
    ]  # fmt: skip
    assert prepared.parts == 3


def test_a_default_region_reads_national_numbers() -> None:
    prepared = prepare(b"phone\n(202) 555-0100\n", "Hi", "US")
    assert prepared.rows == [Row(2, "+12025550100", "Hi", 1)]


def test_a_rendered_text_over_the_limit_is_an_invalid_row() -> None:
    prepared = prepare(b"phone,a\n+12025550100," + b"x" * 40000 + b"\n", "{{a}}{{a}}", None)
    assert prepared.rows == []
    assert prepared.invalid[0].reason == "text: String should have at most 65535 characters"


# The batch service


def migrated(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "data")
    migrate.upgrade(settings)
    return settings


def with_db(settings: Settings, action: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = database_for(settings)
        try:
            return await action(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


async def user_named(db: Database, login: str) -> int:
    await accounts.create_user(db, login, "correct horse battery")
    return await accounts.user_id_of(db, login)


CSV = b"phone,name\n" + b"".join(b"+1202555%04d,n%d\n" % (i, i) for i in range(600)) + b"555,x\n"


def upload(content: bytes = CSV) -> bulk.Upload:
    return bulk.Upload(file_name="people.csv", content=content, text="Hi {{name}}")


def count(settings: Settings, sql: str) -> int:
    return int(database_rows(settings, sql)[0][0])


def test_a_preview_is_sent_once_in_chunks_and_its_rows_keep_their_outcomes(
    tmp_path: Path, at: list[datetime]
) -> None:
    settings = migrated(tmp_path)
    chunks: list[int] = []

    async def scenario(db: Database) -> tuple[bool, bool, bulk.BatchView]:
        user = await user_named(db, "owner")
        batch_id = await bulk.preview(db, None, user, upload())
        first = await bulk.confirm(db, user, batch_id)
        second = await bulk.confirm(db, user, batch_id)
        await bulk.send(db, None, batch_id, lambda _, sent: chunks.append(len(sent)))
        return first, second, await bulk.view(db, user, batch_id)

    first, second, view = with_db(settings, scenario)
    assert (first, second) == (True, False)
    assert chunks == [256, 256, 88]
    batch = view.batch
    assert (batch.state, batch.total, batch.accepted, batch.failed, batch.invalid) == (
        "done", 600, 600, 0, 1)  # fmt: skip
    assert view.states == {"Pending": 600}
    assert [(p.row, p.phone, p.error) for p in view.problems] == [
        (602, "555", "phone: '555' has no country code; write it as +<country code><number> "
         "or set SMSGW_DEFAULT_REGION on the server")
    ]  # fmt: skip
    assert [(s.row, s.text) for s in view.sample[:2]] == [(2, "Hi n0"), (3, "Hi n1")]
    assert count(settings, "SELECT count(*) FROM messages") == 600


def test_a_batch_whose_sender_stopped_is_taken_over_without_sending_a_row_twice(
    tmp_path: Path, at: list[datetime]
) -> None:
    settings = migrated(tmp_path)

    async def crash_then_resume(db: Database) -> tuple[list[str], list[str], bulk.BatchView]:
        user = await user_named(db, "owner")
        batch_id = await bulk.preview(db, None, user, upload())
        assert await bulk.confirm(db, user, batch_id)
        # The sender queued the first row, then stopped before recording it.
        (first,) = (await bulk.view(db, user, batch_id)).sample[:1]
        command = messages.SendCommand([first.phone], text=first.text, ext_id=first.message_id)
        await messages.send(db, None, user, command)
        early = await bulk.stale(db)  # its lease still runs
        at[0] = CLOCK_START + bulk.LEASE + timedelta(seconds=1)
        late = await bulk.stale(db)
        assert await bulk.take(db, batch_id)
        assert not await bulk.take(db, batch_id)  # one process wins it
        await bulk.send(db, None, batch_id, lambda *_: None)
        return early, late, await bulk.view(db, user, batch_id)

    early, late, view = with_db(settings, crash_then_resume)
    assert early == [] and late == [view.batch.id]
    assert (view.batch.state, view.batch.accepted, view.batch.failed) == ("done", 600, 0)
    assert count(settings, "SELECT count(*) FROM messages") == 600


def test_previews_are_the_owners_expire_and_are_pruned(tmp_path: Path, at: list[datetime]) -> None:
    settings = migrated(tmp_path)

    async def scenario(db: Database) -> None:
        owner = await user_named(db, "owner")
        other = await user_named(db, "other")
        kept = await bulk.preview(db, None, owner, upload())
        dropped = await bulk.preview(db, None, owner, upload())
        with pytest.raises(NotFound):
            await bulk.view(db, other, kept)
        with pytest.raises(NotFound):
            await bulk.confirm(db, other, kept)
        with pytest.raises(NotFound):
            await bulk.discard(db, other, kept)
        await bulk.discard(db, owner, dropped)
        with pytest.raises(NotFound):
            await bulk.view(db, owner, dropped)
        at[0] = CLOCK_START + bulk.PREVIEW_TTL + timedelta(seconds=1)
        with pytest.raises(NotFound):
            await bulk.view(db, owner, kept)
        with pytest.raises(Conflict, match="expired"):
            await bulk.confirm(db, owner, kept)
        assert await bulk.recent(db, owner) == []
        assert (await retention.sweep(db, settings))["batches"] == 1

    with_db(settings, scenario)
    assert count(settings, "SELECT count(*) FROM batch_items") == 0
    assert count(settings, "SELECT count(*) FROM messages") == 0


def test_a_confirmed_batch_cannot_be_discarded(tmp_path: Path, at: list[datetime]) -> None:
    settings = migrated(tmp_path)

    async def scenario(db: Database) -> None:
        owner = await user_named(db, "owner")
        batch_id = await bulk.preview(db, None, owner, upload(b"phone,name\n+12025550100,a\n"))
        await bulk.confirm(db, owner, batch_id)
        with pytest.raises(Conflict, match="no longer be discarded"):
            await bulk.discard(db, owner, batch_id)

    with_db(settings, scenario)


def test_a_file_without_rows_is_refused(tmp_path: Path, at: list[datetime]) -> None:
    settings = migrated(tmp_path)

    async def scenario(db: Database) -> Any:
        owner = await user_named(db, "owner")
        return await bulk.preview(db, None, owner, upload(b"phone,name\n\n"))

    with pytest.raises(InvalidInput, match="no rows to send"):
        with_db(settings, scenario)
