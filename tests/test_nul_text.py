"""U+0000 in what a request carries: PostgreSQL's text cannot hold it (SQLite stores it), so
there it is bad input, a 400 that says so, never a 500. The send's own fields say which
field (tests/test_send_validation.py); webhook URLs refuse it, as any control character,
on both engines."""

from __future__ import annotations

import httpx
import pytest

from smsgw.api.errors import NUL_REFUSED
from smsgw.db.engine import is_nul_refused

PATHS = [
    ("GET", "/messages/a%00b"),
    ("GET", "/messages?deviceId=a%00b"),
    ("DELETE", "/webhooks/a%00b"),
    ("DELETE", "/devices/a%00b"),
    ("DELETE", "/auth/token/a%00b"),
    ("DELETE", "/auth/keys/a%00b"),
    ("GET", "/links/a%00b"),
]


@pytest.mark.parametrize(("method", "path"), PATHS)
def test_a_nul_in_a_path_or_query_is_a_4xx_on_either_engine(
    api: httpx.Client, engine: str, method: str, path: str
) -> None:
    response = api.request(method, path)
    if engine == "postgresql":
        assert (response.status_code, response.json()) == (400, {"message": NUL_REFUSED})
    else:  # stored and looked up as any other text: nothing has that id
        assert response.status_code in (200, 204, 404), response.text
    assert api.get("/messages").status_code == 200  # the connection and the server go on


@pytest.mark.parametrize("bad", ["\x00", "\x01", "\x1f", "\x7f", "\x85", " "])
def test_a_webhook_url_with_a_control_character_is_refused(api: httpx.Client, bad: str) -> None:
    body = {"url": f"https://example.com/a{bad}b", "event": "sms:received"}
    response = api.post("/webhooks", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("url: must be an absolute http(s) URL")
    assert api.get("/webhooks").json() == []


def test_only_the_nul_refusal_counts_as_bad_input() -> None:
    psycopg = pytest.importorskip("psycopg")
    refused = psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    assert is_nul_refused(refused)
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = refused
    assert is_nul_refused(wrapped)
    assert not is_nul_refused(psycopg.DataError("value too long for type character varying(32)"))
    assert not is_nul_refused(ValueError("NUL"))
    assert not is_nul_refused(psycopg.DataError('null value in column "NUL" violates ...'))
