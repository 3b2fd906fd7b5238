"""No input makes a 500: each of these was one, and is now a 4xx saying what is wrong. After
any answer, 4xx or 5xx, the keep-alive connection still serves the next request."""

from __future__ import annotations

import base64
import http.client
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import jwt
import pytest

from smsgw.inbox import service as inbox_service
from tests.clients import TLS
from tests.conftest import Account, LiveServer
from tests.web_support import Dashboard, alerts_of, csrf_of

MOBILE = "/api/mobile/v1"
NON_ASCII_BASIC = {"Authorization": b"Basic \xc3\xa9\xff"}  # bytes, as a client may send
MALFORMED = "Unauthorized: malformed Basic credentials"


@pytest.fixture
def signed_in(server: LiveServer, alice: Account) -> Iterator[Dashboard]:
    web = Dashboard(server)
    assert web.sign_in(alice).status_code == 303
    yield web
    web.close()


@pytest.fixture
def hook(server: LiveServer, alice: Account) -> str:
    """The URL path a registered phone posts its events to (hub mode)."""
    with server.client(alice, prefix=MOBILE) as owner:
        token = owner.post("/device", json={"name": "phone"}).json()["token"]
    with server.client(prefix=MOBILE) as phone:
        hooks = phone.get("/webhooks", headers={"Authorization": f"Bearer {token}"}).json()
    return urlsplit(hooks[0]["url"]).path


def test_basic_credentials_with_non_ascii_bytes_are_401_on_every_route(
    server: LiveServer,
) -> None:
    with httpx.Client(
        base_url=server.url, timeout=30, headers=NON_ASCII_BASIC, verify=TLS
    ) as client:
        answers = [
            client.get("/api/3rdparty/v1/messages"),
            client.post(MOBILE + "/device", json={"name": "phone"}),
            client.get(MOBILE + "/user/code"),
        ]
    assert [(a.status_code, a.json()["message"]) for a in answers] == [(401, MALFORMED)] * 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"event": ["sms:received"], "id": "e1", "payload": {}}', "event: unknown event"),
        ('{"event": {}, "id": "e1", "payload": {}}', "event: unknown event"),
        ("[" * 1000 + "]" * 1000, "JSON body nested too deeply"),
        ('{"a":' * 900 + "1" + "}" * 900, "JSON body nested too deeply"),
        (
            '{"event": "sms:received", "id": "e1", "payload": {"messageId": "m1", '
            '"message": "\\ud800", "phoneNumber": "+12025550100"}}',
            "JSON body holds a string that is not Unicode text",
        ),
    ],
)
def test_a_phones_hook_post_that_cannot_be_read_is_400(
    server: LiveServer, hook: str, body: str, message: str
) -> None:
    with httpx.Client(base_url=server.url, timeout=30, verify=TLS) as client:
        answer = client.post(hook, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["message"].startswith(message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 1000 + b"]" * 1000, "malformed JSON body: nested too deeply"),
        (b'{"id": ' + b"9" * 5000 + b"}", "malformed JSON body: a number with too many digits"),
        (b'{"id": "\xff"}', "malformed JSON body: not UTF-8 text"),
    ],
)
def test_a_json_body_the_parser_gives_up_on_is_400_saying_why(
    api: httpx.Client, body: bytes, message: str
) -> None:
    for method, path in (("POST", "/messages"), ("PATCH", "/settings"), ("POST", "/webhooks")):
        answer = api.request(
            method, path, content=body, headers={"Content-Type": "application/json"}
        )
        assert (answer.status_code, answer.json()["message"]) == (400, message), path


def test_an_inbox_offset_beyond_the_databases_integers_is_400(api: httpx.Client) -> None:
    answer = api.get("/inbox", params={"offset": str(2**63)})
    assert answer.status_code == 400
    assert answer.json()["message"].startswith("offset: Input should be less than or equal to")
    assert api.get("/inbox", params={"offset": str(2**63 - 1)}).json() == []


@pytest.mark.parametrize("page", ["/dashboard/messages", "/dashboard/inbox"])
def test_a_dashboard_page_number_too_large_is_400(signed_in: Dashboard, page: str) -> None:
    answer = signed_in.http.get(page, params={"page": "99999999999999999999"})
    assert answer.status_code == 400
    assert alerts_of(answer.text) == ["Page: must be a whole number up to 1000000000"]
    assert signed_in.http.get(page, params={"page": "1000000000"}).status_code == 200


def test_a_token_lifetime_in_other_digits_is_400(signed_in: Dashboard) -> None:
    token = csrf_of(signed_in.http.get("/dashboard/tokens").text)
    form = {"csrf": token, "scope": "messages:read", "ttl": "²"}
    answer = signed_in.http.post("/dashboard/tokens", data=form)
    assert answer.status_code == 400
    assert "Lifetime: must be a whole number of seconds" in alerts_of(answer.text)


@pytest.mark.parametrize(
    "forged",
    [
        {"user_id": 2**70},
        {"user_id": 2**63},
        {"user_id": 0},
        {"user_id": True},
        {"jti": "\ud800"},
        {"jti": ["a list"]},
        {"stamp": "\ud800"},
    ],
)
def test_a_signed_token_with_claims_smsgw_never_writes_is_401(
    server: LiveServer, api: httpx.Client, forged: dict[str, object]
) -> None:
    """Only a holder of the signing key can make these; still no 500."""
    pair = api.post("/auth/token", json={"scopes": ["messages:list"]}).json()
    secret = (server.settings.data_dir / "jwt-secret").read_text().strip()
    for kind in ("access_token", "refresh_token"):
        claims = jwt.decode(pair[kind], options={"verify_signature": False})
        token = jwt.encode({**claims, **forged}, secret, algorithm="HS256")
        with server.client() as client:
            headers = {"Authorization": f"Bearer {token}"}
            answers = [
                client.get("/messages", headers=headers),
                client.post("/auth/token/refresh", headers=headers),
            ]
        assert [answer.status_code for answer in answers] == [401, 401], kind


def test_the_connection_serves_the_next_request_after_a_4xx_or_a_500(
    server: LiveServer, alice: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(inbox_service, "list_inbox", broken)
    api = "/api/3rdparty/v1"
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
    pair = f"{alice.login}:{alice.password}".encode()
    authorization = "Basic " + base64.b64encode(pair).decode()
    steps = [
        ("GET", f"{api}/messages", {}, 401),
        ("GET", f"{api}/inbox", {"Authorization": authorization}, 500),
        ("GET", f"{api}/messages", {"Authorization": authorization}, 200),
        ("POST", f"{api}/messages", {"Authorization": authorization}, 400),
        ("GET", f"{api}/messages/nope", {"Authorization": authorization}, 404),
        ("GET", f"{api}/inbox", {"Authorization": authorization}, 500),
        ("GET", f"{api}/health", {}, 200),
    ]
    connection.connect()
    socket = connection.sock
    for method, path, headers, expected in steps:
        connection.request(method, path, body="{", headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == expected, (method, path)
        assert connection.sock is socket, "the server closed the connection"
    connection.close()
