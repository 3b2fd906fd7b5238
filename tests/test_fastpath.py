"""The hot routes (the phones' pull and report, the applications' send) answer every request
as FastAPI alone answers it; their fast path (api/fastpath.py) serves the plain requests and
leaves everything else to FastAPI."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from smsgw.api.fastpath import FastPaths, serve_fast
from smsgw.config import Settings
from tests.clients import TLS
from tests.conftest import ServerThread, create_account, make_settings, module_settings

MOBILE = "/api/mobile/v1"
ROUTES = [
    f"{prefix}{path}" for prefix in (MOBILE, "/mobile/v1") for path in ("/message", "/messages")
]
API = "/api/3rdparty/v1"
SENDS = [
    f"{prefix}{path}" for prefix in (API, "/3rdparty/v1") for path in ("/messages", "/message")
]
PASSWORD = "correct horse battery"
TIMESTAMP = "2026-12-03T08:00:00.000+00:00"
REPORT = [
    {
        "id": "fastpath-unknown-1",
        "state": "Sent",
        "recipients": [{"phoneNumber": "+12025550100", "state": "Sent"}],
        "states": {"Processed": TIMESTAMP, "Sent": TIMESTAMP},
    }
]
JSON = "application/json; charset=UTF-8"


class Counting:
    """An ASGI app that counts the requests it serves."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


def route_of(app: FastAPI, method: str, path: str) -> Any:
    return next(
        r for r in app.router.routes
        if getattr(r, "path", None) == path and method in getattr(r, "methods", ())
    )  # fmt: skip


@dataclass
class Gateway:
    """A running server whose hot routes' FastAPI handlers count the requests they serve."""

    url: str
    app: FastAPI
    token: str
    jwt: str  # the owner's, with messages:read only
    lanes: dict[tuple[str, str], Any]  # the fast paths, as installed
    framework: dict[tuple[str, str], Counting]  # the routes' own handlers, by (method, path)

    def fast_paths(self, on: bool) -> None:
        paths: FastPaths = self.app.state.fast_paths
        paths.lanes = dict(self.lanes) if on else {}


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest
) -> Iterator[Gateway]:
    data_dir = tmp_path_factory.mktemp("fastpath") / "data"
    settings: Settings = module_settings(data_dir, engine, request)
    thread = ServerThread(settings)
    thread.start()
    try:
        url = f"http://127.0.0.1:{thread.port}"
        create_account(settings, "owner", PASSWORD)
        basic = base64.b64encode(f"owner:{PASSWORD}".encode()).decode()
        answer = httpx.post(
            url + MOBILE + "/device",
            json={"name": "fastpath"},
            headers={"Authorization": f"Basic {basic}"},
            timeout=10,
            verify=TLS,
        )
        assert answer.status_code == 201, answer.text
        jwt = httpx.post(
            url + API + "/auth/token",
            json={"scopes": ["messages:read"]},
            auth=("owner", PASSWORD),
            timeout=10,
            verify=TLS,
        )
        assert jwt.status_code == 201, jwt.text
        app = thread.server.app
        lanes = dict(app.state.fast_paths.lanes)
        gateway = Gateway(url, app, answer.json()["token"], jwt.json()["access_token"], lanes, {})
        routes = [(method, path) for path in ROUTES for method in ("GET", "PATCH")]
        for method, path in routes + [("POST", path) for path in SENDS]:
            assert (method, path) in lanes, f"{method} {path} has no fast path"
            route = route_of(app, method, path)
            gateway.framework[method, path] = route.app = Counting(route.app)
        yield gateway
    finally:
        thread.stop()


class Streamed(bytes):
    """A body to send in pieces, without a Content-Length."""


def chunks(data: bytes) -> Iterator[bytes]:
    """A body sent in pieces, without a Content-Length."""
    for start in range(0, len(data), 7):
        yield data[start : start + 7]


def requests(token: str) -> list[tuple[str, str, dict[str, str], Any]]:
    """(method, query, headers, body) of plain and odd requests to a hot route."""
    good = httpx.Request("PATCH", "http://x", json=REPORT).content
    bearer = {"Authorization": f"Bearer {token}"}
    wrong = {"Authorization": "Bearer not-a-token"}
    year_one = good.replace(TIMESTAMP.encode(), b"0001-01-01T00:00:00+01:00")  # out of range
    return [
        ("PATCH", "", {**bearer, "Content-Type": JSON}, good),
        ("PATCH", "", {**bearer, "Content-Type": "application/json"}, good),
        ("PATCH", "", {**bearer, "Content-Type": JSON}, Streamed(good)),
        ("PATCH", "", {**bearer, "Content-Type": JSON}, b"[{"),
        ("PATCH", "", {**bearer, "Content-Type": JSON}, b"[" * 1000 + b"]" * 1000),
        ("PATCH", "", {**bearer, "Content-Type": JSON}, b"{}"),
        ("PATCH", "", {**bearer, "Content-Type": JSON}, b"[]"),
        ("PATCH", "", {**bearer, "Content-Type": JSON}, b""),
        ("PATCH", "", {**bearer, "Content-Type": JSON}, b'[{"id": "x", "state": "Sent"}]'),
        ("PATCH", "", {**bearer, "Content-Type": JSON}, good.replace(b'"Sent"', b'"Lost"')),
        ("PATCH", "", {**bearer, "Content-Type": JSON}, good.replace(TIMESTAMP.encode(), b"no")),
        ("PATCH", "", {**bearer, "Content-Type": JSON}, year_one),
        ("PATCH", "", {**bearer, "Content-Type": "text/plain"}, good),
        ("PATCH", "", {**bearer, "Content-Type": "application/merge-patch+json"}, good),
        ("PATCH", "", bearer, good),
        ("PATCH", "", {**wrong, "Content-Type": JSON}, good),
        ("PATCH", "", {**wrong, "Content-Type": JSON}, b"[{"),
        ("PATCH", "", {"Content-Type": JSON}, good),
        ("PATCH", "", {"Authorization": "Basic b3duZXI6eA==", "Content-Type": JSON}, good),
        ("GET", "", bearer, None),
        ("GET", "?order=fifo", bearer, None),
        ("GET", "?order=lifo&other=1", bearer, None),
        ("GET", "?order=sideways", bearer, None),
        ("GET", "?order=lifo&order=fifo", bearer, None),
        ("GET", "?order=", bearer, None),
        ("GET", "", wrong, None),
        ("GET", "?order=sideways", wrong, None),
        ("GET", "", {}, None),
    ]


def answer_of(gateway: Gateway, path: str, request: tuple[str, str, dict[str, str], Any]) -> Any:
    method, query, headers, body = request
    if isinstance(body, Streamed):
        body = chunks(body)
    with httpx.Client(timeout=10, verify=TLS) as client:
        answer = client.request(method, gateway.url + path + query, headers=headers, content=body)
    kept = ("content-type", "www-authenticate", "content-length", "retry-after")
    return answer.status_code, answer.content, {k: answer.headers.get(k) for k in kept}


def sends(gateway: Gateway) -> list[tuple[str, str, dict[str, str], Any]]:
    """(method, query, headers, body) of refused sends, plain and odd."""
    basic = "Basic " + base64.b64encode(f"owner:{PASSWORD}".encode()).decode()
    owner = {"Authorization": basic, "Content-Type": "application/json"}
    good = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "hi"}, "id": "taken-id"}

    def body(**changes: Any) -> bytes:
        return httpx.Request("POST", "http://x", json={**good, **changes}).content

    wrong = base64.b64encode(b"owner:wrong").decode()
    return [
        ("POST", "", owner, body()),  # the id is taken: 409
        ("POST", "", owner, Streamed(body())),
        ("POST", "?skipPhoneValidation=true", owner, body()),
        ("POST", "?skipPhoneValidation=maybe", owner, body()),
        ("POST", "?skipPhoneValidation=true&skipPhoneValidation=false", owner, body()),
        ("POST", "", owner, body(phoneNumbers=["12"])),
        ("POST", "", owner, body(phoneNumbers=[])),
        ("POST", "", owner, body(textMessage=None)),
        ("POST", "", owner, body(ttl=-1)),
        ("POST", "", owner, body(id="x" * 37)),
        ("POST", "", owner, b"{"),
        ("POST", "", owner, b'{"a":' * 900 + b"1" + b"}" * 900),
        ("POST", "", owner, b"[]"),
        ("POST", "", owner, b""),
        ("POST", "", {**owner, "Content-Type": "text/plain"}, body()),
        ("POST", "", {"Content-Type": "application/json"}, body()),
        ("POST", "", {"Content-Type": "application/json"}, b"{"),
        ("POST", "", {**owner, "Authorization": f"Basic {wrong}"}, body()),
        ("POST", "", {**owner, "Authorization": f"Bearer {gateway.jwt}"}, body()),
        ("POST", "", {**owner, "Authorization": "Bearer not-a-jwt"}, body()),
    ]


def both_answers(gateway: Gateway, path: str, request: Any) -> tuple[Any, Any]:
    """The answer to `request` with the fast paths on, then with FastAPI alone."""
    gateway.fast_paths(on=True)
    fast = answer_of(gateway, path, request)
    gateway.fast_paths(on=False)
    try:
        return fast, answer_of(gateway, path, request)
    finally:
        gateway.fast_paths(on=True)


@pytest.mark.parametrize("path", ROUTES)
def test_every_answer_is_the_framework_s_own(gateway: Gateway, path: str) -> None:
    for request in requests(gateway.token):
        fast, plain = both_answers(gateway, path, request)
        assert fast == plain, request


@pytest.mark.parametrize("path", SENDS)
def test_every_answer_to_a_refused_send_is_the_framework_s_own(gateway: Gateway, path: str) -> None:
    with httpx.Client(timeout=10, auth=("owner", PASSWORD), verify=TLS) as client:
        taken = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "hi"}, "id": "taken-id"}
        assert client.post(gateway.url + API + "/messages", json=taken).status_code in (200, 409)
    for request in sends(gateway):
        fast, plain = both_answers(gateway, path, request)
        assert fast == plain, request
        assert fast[0] >= 400, request


def test_a_send_answers_the_same_through_either_path(gateway: Gateway) -> None:
    answers = []
    for on in (True, False):
        gateway.fast_paths(on=on)
        try:
            with httpx.Client(
                base_url=gateway.url + API, auth=("owner", PASSWORD), verify=TLS
            ) as client:
                body = {"phoneNumbers": ["+12025550101"], "textMessage": {"text": "hi"}}
                answer = client.post("/messages", json=body)
                assert answer.status_code == 200, answer.text
                stored = client.get(answer.headers["Location"].removeprefix(API))
        finally:
            gateway.fast_paths(on=True)
        sent = answer.json()
        assert stored.json()["id"] == sent["id"]
        assert answer.headers["Location"] == f"{API}/messages/{sent['id']}"
        moments = {"id", "createdAt", "states"}  # differ between the two sends
        shape = {k: v for k, v in sent.items() if k not in moments}
        answers.append((shape, list(sent["states"]), answer.headers["content-type"]))
    assert answers[0] == answers[1]


def test_plain_requests_take_the_fast_path_and_odd_ones_fastapi(gateway: Gateway) -> None:
    gateway.fast_paths(on=True)
    bearer = {"Authorization": f"Bearer {gateway.token}"}
    patch = gateway.framework["PATCH", f"{MOBILE}/message"]
    pull = gateway.framework["GET", f"{MOBILE}/message"]
    before = (patch.calls, pull.calls)
    with httpx.Client(
        base_url=gateway.url + MOBILE, headers=bearer, timeout=10, verify=TLS
    ) as client:
        assert client.patch("/message", json=REPORT).status_code == 204
        assert client.get("/message", params={"order": "lifo"}).status_code == 200
        assert (patch.calls, pull.calls) == before  # FastAPI never saw them
        assert client.patch("/message", content=b"[{").status_code == 400
        assert client.get("/message", params={"order": "up"}).status_code == 400
        assert (patch.calls, pull.calls) == (before[0] + 1, before[1] + 1)
        # A wrong token on a plain request is the fast path's to refuse, as FastAPI would.
        wrong = {"Authorization": "Bearer wrong"}
        assert client.patch("/message", json=REPORT, headers=wrong).status_code == 401
        assert (patch.calls, pull.calls) == (before[0] + 1, before[1] + 1)
    send = gateway.framework["POST", f"{API}/messages"]
    calls = send.calls
    with httpx.Client(
        base_url=gateway.url + API, auth=("owner", PASSWORD), timeout=10, verify=TLS
    ) as api:
        body = {"phoneNumbers": ["+12025550102"], "textMessage": {"text": "hi"}}
        assert api.post("/messages", json=body).status_code == 200
        assert send.calls == calls
        assert (
            api.post("/messages", json=body, params={"skipPhoneValidation": "true"}).status_code
            == 200
        )
        assert send.calls == calls + 1


def test_a_streamed_body_over_the_limit_is_refused_as_before(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", max_body_bytes=1024)
    thread = ServerThread(settings)
    thread.start()
    try:
        paths: FastPaths = thread.server.app.state.fast_paths
        lanes = dict(paths.lanes)
        assert ("PATCH", f"{MOBILE}/message") in lanes
        big = b"[" + b" " * 4096 + b"]"
        answers = []
        for on in (True, False):
            paths.lanes = lanes if on else {}
            with httpx.Client(timeout=10, verify=TLS) as client:
                answer = client.patch(
                    f"http://127.0.0.1:{thread.port}{MOBILE}/message",
                    content=chunks(big),
                    headers={"Authorization": "Bearer x", "Content-Type": JSON},
                )
            answers.append((answer.status_code, answer.content))
        assert answers[0] == answers[1]
        assert answers[0][0] in (400, 413)
    finally:
        thread.stop()


def requests_counted(gateway: Gateway, method: str, route: str, status: int) -> float:
    page = httpx.get(gateway.url + "/metrics", timeout=20, verify=TLS).text
    wanted = f'smsgw_http_requests_total{{method="{method}",route="{route}",status="{status}"}} '
    lines = [line for line in page.splitlines() if line.startswith(wanted)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


def test_the_fast_path_s_requests_are_counted_under_their_route(gateway: Gateway) -> None:
    gateway.fast_paths(on=True)
    route = f"{MOBILE}/message"
    before = (
        requests_counted(gateway, "PATCH", route, 204),
        requests_counted(gateway, "GET", route, 200),
    )
    bearer = {"Authorization": f"Bearer {gateway.token}"}
    with httpx.Client(
        base_url=gateway.url + MOBILE, headers=bearer, timeout=10, verify=TLS
    ) as client:
        for _ in range(3):
            assert client.patch("/message", json=REPORT).status_code == 204
            assert client.get("/message").status_code == 200
    after = (
        requests_counted(gateway, "PATCH", route, 204),
        requests_counted(gateway, "GET", route, 200),
    )
    assert after == (before[0] + 3, before[1] + 3)


def test_a_pull_is_answered_without_waiting_for_a_body(gateway: Gateway) -> None:
    """A GET's body is never read: a pull whose chunked body never ends is answered."""
    gateway.fast_paths(on=True)
    host, port = gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(
            f"GET {MOBILE}/message HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {gateway.token}\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nab".encode()
        )
        head = sock.recv(65536).decode(errors="replace")
    assert head.startswith("HTTP/1.1 200"), head


def test_a_fast_path_is_refused_where_the_router_would_serve_another_route() -> None:
    app = FastAPI()

    @app.get("/{anything}")
    async def first(anything: str) -> str:
        return anything

    @app.get("/plain")
    async def second() -> str:
        return "plain"

    async def fast(_request: Any) -> None:
        return None

    paths = FastPaths()
    with pytest.raises(LookupError, match="no GET route serves /plain first"):
        serve_fast(app, paths, "GET", {"/plain"}, fast)
    with pytest.raises(LookupError, match="no POST route serves /missing first"):
        serve_fast(app, paths, "POST", {"/missing"}, fast)
    assert paths.lanes == {}
