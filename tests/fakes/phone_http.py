"""The simulated phone's HTTP client: aiohttp, set up to send what httpx.AsyncClient sent.

httpx cost ~1.7-2.0 ms of client CPU a request, aiohttp ~0.1 ms: bench/fleet runs 50 phones
in one process, which was the bound. Only the transport changed; the requests did not:

- headers: httpx's defaults (`Accept: */*`, `Accept-Encoding: gzip, deflate`,
  `Connection: keep-alive`) and the phone's `User-Agent`, each overridden by the caller's;
  a body goes as bytes, with the caller's `Content-Type` or none (aiohttp adds none);
- the URL is sent as given (no requoting), query parameters encoded as httpx encodes them;
- no redirects are followed; a non-2xx answer is returned, `raise_for_status` makes it a
  failure; bodies are decompressed as httpx did (gzip, deflate);
- timeouts per phase as `httpx.Timeout(10.0)`: connecting, then each read of the answer;
  idle connections are kept 5 s (httpx's keep-alive expiry; the server's is 5 s too);
- every failure is an `HTTPError`: `TransportError` (no answer: refused, reset, timed out)
  or `HTTPStatusError` (a non-2xx answer, in `.response`), as httpx's hierarchy.

The aiohttp session is made on first use, on the running event loop (phones may be built
outside one), and closed by `close()`; a closed client refuses requests, as httpx's did.
"""

from __future__ import annotations

import codecs
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

#: httpx.Timeout(10.0): 10 s to connect, then 10 s for each read (no bound on the whole).
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=10.0)
#: httpx.Timeout(10.0, read=3600.0): an event stream is quiet between events.
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=3600.0)
#: What httpx.AsyncClient sent on every request unless told otherwise.
DEFAULT_HEADERS = {
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
    "Connection": "keep-alive",
}


class HTTPError(Exception):
    """A request failed: no answer, or an answer that is not 2xx."""


class TransportError(HTTPError):
    """No answer: the connection was refused or broke, or a timeout ran out."""


class HTTPStatusError(HTTPError):
    """The server answered, not with 2xx; the answer is `response`."""

    def __init__(self, message: str, response: Answer) -> None:
        super().__init__(message)
        self.response = response


@dataclass(frozen=True)
class Answer:
    """A whole answer, body read."""

    status_code: int
    headers: CIMultiDictProxy[str]
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        return json.loads(self.content)


def _raise_for_status(method: str, url: str, answer: Answer) -> None:
    if not answer.is_success:
        raise HTTPStatusError(f"{method} {url} answered {answer.status_code}", answer)


class Lines:
    """An event stream's lines, as httpx's `aiter_lines`: the body decoded incrementally
    (its charset, else UTF-8; bad bytes replaced), split as `str.splitlines` splits, line
    endings dropped; a line split across reads comes out whole."""

    NEWLINES = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines splits at

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._chunks = response.content.iter_any()
        self._decoder = codecs.getincrementaldecoder(response.charset or "utf-8")("replace")
        self._ready: list[str] = []
        self._partial = ""  # text after the last line ending
        self._cr = False  # the text read so far ended in "\r" (maybe half of "\r\n")
        self._ended = False

    def __aiter__(self) -> Lines:
        return self

    async def __anext__(self) -> str:
        while not self._ready:
            if self._ended:
                raise StopAsyncIteration
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._ended = True
                self._split(self._decoder.decode(b"", final=True))
                if self._partial or self._cr:
                    self._ready.append(self._partial)  # the last line, without an ending
                continue
            except (aiohttp.ClientError, TimeoutError) as error:
                raise TransportError(f"event stream: {error!r}") from error
            self._split(self._decoder.decode(chunk))
        return self._ready.pop(0)

    def _split(self, text: str) -> None:
        if self._cr:
            text = "\r" + text  # "\r" then "\n" in the next read is one line ending
            self._cr = False
        if text.endswith("\r"):
            self._cr = True
            text = text[:-1]
        if not text:
            return
        lines = (self._partial + text).splitlines()
        self._partial = "" if text[-1] in self.NEWLINES else lines.pop()
        self._ready.extend(lines)


class Stream:
    """An answer being read: status, headers and the body's `lines()`."""

    def __init__(self, method: str, url: str, response: aiohttp.ClientResponse) -> None:
        self.method, self.url = method, url
        self.status_code = response.status
        self.headers = response.headers
        self._response = response

    def raise_for_status(self) -> None:
        answer = Answer(self.status_code, self.headers, b"")
        _raise_for_status(self.method, self.url, answer)

    def lines(self) -> Lines:
        return Lines(self._response)


class PhoneHTTP:
    """One phone's HTTP client (a connection pool), made on first use."""

    def __init__(self, user_agent: str) -> None:
        self.headers = {**DEFAULT_HEADERS, "User-Agent": user_agent}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the phone's HTTP client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self.headers,
                skip_auto_headers=("Content-Type",),  # only the caller's, as with httpx
                # httpx.Limits(): 100 connections, idle ones closed after 5 s
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=5.0),
                timeout=REQUEST_TIMEOUT,
                cookie_jar=aiohttp.CookieJar(unsafe=True),  # httpx kept cookies of IP hosts too
            )
            # aiohttp sends a GET again, once, when a kept-alive connection breaks before an
            # answer; httpx did not, and a pull sent twice is two pulls (the phone's own
            # retries are the only ones). Private, as aiohttp's own test client sets it;
            # releases without that retry have no such attribute.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
        return self._session

    @staticmethod
    def _url(url: str, params: Mapping[str, str] | None) -> URL:
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)  # as httpx encodes them
        return URL(url, encoded=True)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        raise_for_status: bool = True,
    ) -> Answer:
        """Send a request and read the whole answer; with `raise_for_status`, a non-2xx
        answer raises `HTTPStatusError` (any non-2xx is a failure, as the app's Ktor client
        with expectSuccess)."""
        session = self._open()
        try:
            async with session.request(
                method,
                self._url(url, params),
                data=body,
                headers=headers,
                allow_redirects=False,
            ) as response:
                answer = Answer(response.status, response.headers, await response.read())
        except (aiohttp.ClientError, TimeoutError) as error:
            raise TransportError(f"{method} {url}: {error!r}") from error
        if raise_for_status:
            _raise_for_status(method, url, answer)
        return answer

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, url: str, *, headers: Mapping[str, str]
    ) -> AsyncIterator[Stream]:
        """An answer read as it comes (an event stream: long reads allowed); leaving the
        block closes it."""
        session = self._open()
        try:
            response = await session.request(
                method,
                self._url(url, None),
                headers=headers,
                allow_redirects=False,
                timeout=STREAM_TIMEOUT,
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            raise TransportError(f"{method} {url}: {error!r}") from error
        async with response:
            yield Stream(method, url, response)

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
