"""One webhook request as the delivery worker sends it (`sender.post` on a `guard.session`),
against servers on 127.0.0.1 only: what goes out (exactly the signed body, no cookies), what
is read back, the timeouts' texts, and the guard in the session's own path (names are
resolved by a patched `guard.resolve`, never by DNS)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from smsgw.webhooks import guard, sender
from smsgw.webhooks.repository import Due
from tests.webhook_support import run, verify_signature

pytestmark = pytest.mark.one_engine("no database")  # conftest.py

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def due(url: str) -> Due:
    now = datetime.now(UTC)
    return Due(1, 0, now, now, 1, "hook", url, 1, "ev", "sms:sent", None, {"x": "é"})


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A server on 127.0.0.1: its port and every connection it accepted (what each sent)."""
    accepted: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(b"")
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await handler(reader, writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=512)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


class Fixed(AbstractResolver):
    """aiohttp's resolver for the unguarded session: every name is 127.0.0.1."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host="127.0.0.1", port=port,
                              family=socket.AF_INET, proto=0, flags=0)]  # fmt: skip

    async def close(self) -> None:
        pass


def test_a_cookie_a_receiver_sets_is_never_sent_with_a_later_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One session carries every owner's requests: a cookie one receiver sets must not go
    out with the next requests to that host (another owner's webhook there, say), and
    nothing outside the signed request may be added to it."""
    monkeypatch.setattr(aiohttp.connector, "DefaultResolver", Fixed)
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            requests.append(await read_request(reader))
            cookie = b"Set-Cookie: session=of-the-first; Path=/; Domain=receiver.test\r\n"
            writer.write(b"HTTP/1.1 204 No Content\r\n" + cookie + b"\r\n")
            await writer.drain()

    async def scenario() -> None:
        async with serving(answer) as (port, _), guard.session(True, 5) as client:
            for path in ("one", "two"):
                item = due(f"http://receiver.test:{port}/{path}")
                outcome = await sender.post(client, item, "k" * 32, 1024, 5, guarded=False)
                assert outcome.status == 204

    run(scenario)
    assert len(requests) == 2
    assert all(b"\r\ncookie:" not in request.lower() for request in requests)


def test_headers_and_body_go_out_exactly_as_signed() -> None:
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await read_request(reader))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    async def scenario() -> None:
        async with serving(answer) as (port, _), guard.session(True, 5) as client:
            item = due(f"http://127.0.0.1:{port}/hook")
            assert (await sender.post(client, item, "k" * 32, 1024, 5, guarded=False)).status == 204

    run(scenario)
    [request] = requests
    head, body = request.split(b"\r\n\r\n", 1)
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    item = due("http://127.0.0.1/hook")
    assert body == sender.body_of(item)
    assert headers[b"Content-Type"] == b"application/json"
    assert headers[b"Content-Length"] == str(len(body)).encode()
    assert b"Accept-Encoding" not in headers and b"Transfer-Encoding" not in headers
    signed = {k.decode(): v.decode() for k, v in headers.items()}
    assert verify_signature("k" * 32, body, signed)


def test_more_requests_out_than_aiohttps_default_pool_get_connections() -> None:
    """SMSGW_WEBHOOKS_CONCURRENCY goes up to 256; aiohttp's connector allows 100
    connections unless told otherwise, and a request waiting for one counts it against
    its connect timeout: the 101st of slow receivers' requests failed as a connect timeout
    the receiver had nothing to do with. Here the receiver holds every answer until all
    110 requests are in (or 15 s have passed), so with a cap of 100 the last 10 wait out
    the 5 s connect timeout whatever the machine's speed; without one all 110 are in at
    once."""
    many = 110
    received = 0
    all_in = asyncio.Event()

    async def holding(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        await read_request(reader)
        received += 1
        if received == many:
            all_in.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 15)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async def scenario() -> None:
        async with serving(holding) as (port, accepted), guard.session(True, 30) as client:
            item = due(f"http://127.0.0.1:{port}/hook")
            outcomes = await asyncio.gather(
                *(sender.post(client, item, "k" * 32, 1024, 20, guarded=False) for _ in range(many))
            )
            assert [o.error for o in outcomes if o.status != 200] == []
            assert all_in.is_set() and len(accepted) == many

    run(scenario)


def test_a_connect_timeout_does_not_echo_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp's text of a connect timeout is the whole URL, query and all (which may hold
    the owner's token), and the error goes to the server's log as well as the owner's."""

    async def hanging(host: str, port: int) -> list[str]:
        await asyncio.sleep(10)
        return []

    monkeypatch.setattr(guard, "resolve", hanging)

    async def scenario() -> None:
        async with guard.session(False, 0.3) as client:
            item = due("https://hook.test/in/s3cret?token=s3cret")
            outcome = await sender.post(client, item, "k" * 32, 1024, 5)
        assert outcome.status is None
        assert outcome.error == "ConnectionTimeoutError: no connection within 0.3 s"

    run(scenario)


def test_a_name_that_does_not_resolve_is_not_called_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refusal is the guard's (an address it will not reach, which the operator's setting
    would allow); a failed look-up is the network's, as it is with private URLs allowed."""

    async def unknown(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(guard, "resolve", unknown)

    async def scenario() -> None:
        async with guard.session(False, 5) as client:
            outcome = await sender.post(client, due("https://hook.test/in"), "k" * 32, 1024, 5)
        assert outcome.status is None and outcome.error is not None
        assert not outcome.error.startswith("refused")
        assert "hook.test" in outcome.error and "Name or service not known" in outcome.error

    run(scenario)


def test_the_guarded_session_refuses_a_name_resolving_to_an_internal_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check in aiohttp's path (GuardedResolver): its Refused reaches the outcome as it
    is (aiohttp neither wraps nor swallows it), and no connection is made."""

    async def internal(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    monkeypatch.setattr(guard, "resolve", internal)

    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pass

    async def scenario() -> None:
        async with serving(never) as (port, accepted), guard.session(False, 5) as client:
            item = due(f"https://hook.test:{port}/in")
            outcome = await sender.post(client, item, "k" * 32, 1024, 5)
            await asyncio.sleep(0.1)
            assert accepted == []
        assert outcome.status is None
        assert outcome.error == "refused to connect to hook.test: 127.0.0.1 is a loopback address"

    run(scenario)


def test_a_guarded_request_goes_to_the_next_address_when_the_first_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A receiver with several addresses (IPv6 and IPv4, or two IPv4), one of them down: the
    guarded resolver hands aiohttp all of them, every one checked, and aiohttp tries them in
    turn, as without the guard. (Here both are loopback, let through for the test: nothing
    listens on the first, 127.0.0.2, so its connection is refused.)"""

    async def two(host: str, port: int) -> list[str]:
        return ["127.0.0.2", "127.0.0.1"]

    checked: list[str] = []

    def public(address: guard.IPAddress) -> str | None:
        checked.append(str(address))
        return None

    monkeypatch.setattr(guard, "resolve", two)
    monkeypatch.setattr(guard, "why_refused", public)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    async def scenario() -> None:
        async with serving(answer) as (port, accepted), guard.session(False, 5) as client:
            outcome = await sender.post(client, due(f"http://hook.test:{port}/in"), "k" * 32,
                                        1024, 5)  # fmt: skip
            assert (outcome.status, outcome.error) == (204, None)
            assert len(accepted) == 1
        assert checked == ["127.0.0.2", "127.0.0.1"]

    run(scenario)


@pytest.mark.parametrize(
    "addresses", [["93.184.216.34", "10.0.0.1"], ["2606:2800:220:1::1", "::ffff:169.254.169.254"]]
)
def test_a_name_resolving_to_public_and_internal_addresses_is_refused(
    monkeypatch: pytest.MonkeyPatch, addresses: list[str]
) -> None:
    """(Checked in the resolver alone: nothing is connected to, whatever it answers.)"""

    async def mixed(host: str, port: int) -> list[str]:
        return addresses

    monkeypatch.setattr(guard, "resolve", mixed)

    async def scenario() -> None:
        with pytest.raises(guard.Refused, match=f"refused to connect to hook.test: {addresses[1]}"):
            await guard.GuardedResolver().resolve("hook.test", 443)

    run(scenario)


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1%25lo]", "0x7f.1", "0x7f000001",
     "127.1", "2130706433", "017700000001", "127.0.0.1.", "127.000.000.001"],
)  # fmt: skip
def test_the_guarded_request_reaches_no_literal_loopback_in_any_form(host: str) -> None:
    """URLs registered while private URLs were allowed, sent once they are not: refused by
    check_literal or the resolver, or not sent at all (aiohttp refuses the legacy numeric
    forms of IPv4 as invalid URLs)."""

    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pass

    async def scenario() -> None:
        async with serving(never) as (port, accepted), guard.session(False, 5) as client:
            item = due(f"https://{host}:{port}/in")
            outcome = await sender.post(client, item, "k" * 32, 1024, 5)
            await asyncio.sleep(0.1)
            assert accepted == []
        assert outcome.status is None and outcome.error is not None
        assert outcome.error.startswith(("refused to connect to", "invalid URL")), outcome.error

    run(scenario)


def test_a_redirect_is_not_followed() -> None:
    async def elsewhere(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async def scenario() -> None:
        async with serving(elsewhere) as (other, reached):

            async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await read_request(reader)
                location = f"Location: http://127.0.0.1:{other}/internal\r\n".encode()
                writer.write(b"HTTP/1.1 307 Temporary Redirect\r\n" + location
                             + b"Content-Length: 0\r\n\r\n")  # fmt: skip
                await writer.drain()

            async with serving(redirect) as (port, _), guard.session(True, 5) as client:
                item = due(f"http://127.0.0.1:{port}/hook")
                outcome = await sender.post(client, item, "k" * 32, 1024, 5, guarded=False)
                await asyncio.sleep(0.1)
            assert (outcome.status, outcome.error) == (307, "HTTP 307")
            assert reached == []

    run(scenario)


def test_at_most_max_bytes_of_an_endless_answer_are_read() -> None:
    sent = [0]

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
        chunk = b"x" * 65536
        while sent[0] < 1_000_000_000:
            writer.write(chunk)
            await writer.drain()
            sent[0] += len(chunk)

    async def scenario() -> None:
        async with serving(endless) as (port, _), guard.session(True, 5) as client:
            item = due(f"http://127.0.0.1:{port}/hook")
            outcome = await sender.post(client, item, "k" * 32, 64 * 1024, 5, guarded=False)
            await asyncio.sleep(0.2)
        assert (outcome.status, outcome.error) == (200, None)
        assert outcome.duration_ms < 2000
        assert sent[0] < 16 * 1024 * 1024  # the connection was closed, not read to its end

    run(scenario)


@pytest.mark.parametrize("host", ["127.1", "2130706433", "017700000001"])
def test_a_legacy_numeric_loopback_is_refused_with_an_aiohttp_that_sends_it_as_it_is(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """aiohttp before 3.14 (the dependency allows 3.10) hands `127.1` or `2130706433` to the
    socket, which connects to 127.0.0.1, without asking the resolver: the guard must not
    count on aiohttp refusing them (simulated here by turning that refusal off)."""
    monkeypatch.setattr(aiohttp.connector, "is_canonical_ipv4_address", lambda host: True)

    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pass

    async def scenario() -> None:
        async with serving(never) as (port, accepted), guard.session(False, 5) as client:
            outcome = await sender.post(client, due(f"https://{host}:{port}/in"), "k" * 32, 1024, 5)
            await asyncio.sleep(0.1)
            assert accepted == []
        assert outcome.error == f"refused to connect to {host}: {host} is a loopback address"

    run(scenario)
