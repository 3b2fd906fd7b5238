"""smsgw against its own OpenAPI document, fuzzed by schemathesis (its CLI, as users run it).

One run, against a fresh server, bounded by a fixed seed (derandomized) and example count,
with every check on: no 5xx; every status, body, content type and header as documented;
every schema-valid request accepted and every schema-violating one refused; auth enforced;
`Allow` honest on 405; created resources readable, deleted ones gone. It covers the 3rd-party
API (Basic credentials) and the mobile API (a registered phone's token), each operation with
the credentials its `security` names.

The rules the document states in words because JSON Schema cannot (a time in the future, two
values in order, a phone of yours, a public URL) are taught to the fuzzer in
tests/schemathesis_hooks.py, which also generates the `phone` string format. Left out:
`GET /mobile/v1/events`, an event stream that never ends (a fuzzer waits for a whole answer);
tests/test_mobile_api.py covers it.

A body larger than the server takes (`SMSGW_MAX_BODY_BYTES`, documented on every operation)
is answered 413, whatever the schema allows inside it: both acceptance checks count 413 as
the documented refusal it is.

The regressions at the end are what earlier runs found, pinned as plain requests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest

from smsgw.config import Settings
from tests.clients import TLS
from tests.conftest import Account, LiveServer, make_settings, running

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
HOOKS = Path(__file__).parent / "schemathesis_hooks.py"
SEED = "20261127"
#: Per operation; the coverage phase (boundary values of every parameter) comes on top.
MAX_EXAMPLES = "10"
#: The refusals schemathesis expects of invalid data, and allows of valid data, plus 413.
REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
ALLOWED_FOR_VALID = ["2xx", "401", "403", "404", "409", "413", "429"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The fuzzer sends wrong credentials hundreds of times on purpose and expects 401 each
    time; the sign-in throttle would rightly answer 429 (tests/test_auth_throttle.py). It
    registers phones as often as it likes (the per-address limit is off). It adds carrier
    links (`POST /links`) to whatever hosts it makes up: this server runs no links, so none
    is ever connected to (nothing reaches beyond 127.0.0.1)."""
    return make_settings(
        tmp_path / "data",
        auth_failures_per_address=0,
        auth_failures_per_login=0,
        registration_rate_limit=0,
        links=False,
    )


def register_phone(server: LiveServer, account: Account) -> dict[str, Any]:
    """A phone of `account`, registered as the app does (tests/fakes/phone.py): id, token."""
    response = httpx.post(
        f"{server.url}/api/mobile/v1/device",
        json={"name": "fuzz", "simCards": [{"slotIndex": 0, "simNumber": 1}]},
        auth=(account.login, account.password),
        timeout=30,
        verify=TLS,
    )
    assert response.status_code == 201, response.text
    phone: dict[str, Any] = response.json()
    return phone


def config_file(workdir: Path, account: Account, phone_token: str) -> Path:
    """schemathesis.toml: the credentials of each security scheme, and 413 as a refusal."""
    config = workdir / "schemathesis.toml"
    config.write_text(
        "[cache]\nenabled = false\n"  # no state carried between runs
        "[auth.openapi.basicAuth]\n"
        f'username = "{account.login}"\npassword = "{account.password}"\n'
        f'[auth.openapi.phoneToken]\nbearer = "{phone_token}"\n'
        f"[checks.negative_data_rejection]\nexpected-statuses = {REFUSALS!r}\n"
        f"[checks.positive_data_acceptance]\nexpected-statuses = {ALLOWED_FOR_VALID!r}\n"
    )
    return config


def run_schemathesis(server: LiveServer, account: Account, workdir: Path) -> None:
    """Run the schemathesis CLI against the live server; fail with its report if it fails."""
    if not SCHEMATHESIS.exists():
        pytest.fail(f"{SCHEMATHESIS} is missing; install the dev extras (pip install -e '.[dev]')")
    phone = register_phone(server, account)
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config_file(workdir, account, phone["token"])),
        "--no-color",
        "run",
        f"{server.url}/openapi.json",
        "--url",
        server.url,
        "--checks",
        "all",
        "--seed",
        SEED,
        "--generation-deterministic",  # derandomized; implies no example database
        "--max-examples",
        MAX_EXAMPLES,
        "--workers",
        "1",
        "--continue-on-failure",
        "--exclude-path",
        "/api/mobile/v1/events",
        # The credentials are given above; do not also fuzz (or "omit") the Authorization
        # header as if it were a parameter: the configured auth puts it back, which would
        # make a run that meant to drop it look like one the server wrongly accepted.
        "--generation-with-security-parameters",
        "false",
        "--request-timeout",
        "10",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS), "SMSGW_FUZZ_PHONE_ID": phone["id"]}
    result = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    report = f"exit code {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, report
    assert " passed" in result.stdout, report


def test_schemathesis_finds_no_server_error_or_schema_mismatch_in_either_api(
    server: LiveServer, tmp_path: Path
) -> None:
    run_schemathesis(server, server.create_user("fuzzer"), tmp_path)


# The OpenAPI document itself: the error answers it promises.


def openapi(server: LiveServer) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/openapi.json", timeout=10, verify=TLS)
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_the_openapi_document_lists_every_error_status_with_the_error_body(
    server: LiveServer,
) -> None:
    document = openapi(server)
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    auth = {"401", "403", "429"}  # wrong credentials, a token lacking the scope, throttled
    expected = {
        ("post", ""): {"200", "400", "409", "413", "500"} | auth,
        ("get", ""): {"200", "400", "413", "500"} | auth,
        ("get", "/{id}"): {"200", "400", "404", "413", "500"} | auth,
        ("delete", "/{id}"): {"200", "400", "404", "409", "413", "500"} | auth,
    }
    for collection in ("messages", "message"):  # the second is the deprecated legacy path
        for (method, suffix), statuses in expected.items():
            path = f"/api/3rdparty/v1/{collection}{suffix}"
            responses = document["paths"][path][method]["responses"]
            assert set(responses) == statuses, (method, path)
            for status in statuses - {"200"}:
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema == error_body, (method, path, status)
    schemas = document["components"]["schemas"]
    assert schemas["ErrorBody"]["required"] == ["message"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas


def test_the_phone_operations_name_the_credentials_they_take(
    server: LiveServer, tmp_path: Path
) -> None:
    document = openapi(server)
    schemes = document["components"]["securitySchemes"]
    assert {"basicAuth", "bearerAuth", "phoneToken", "userCode", "privateToken"} <= set(schemes)
    mobile = "/api/mobile/v1"
    security = {
        (method, path[len(mobile) :]): operation["security"]
        for path, item in document["paths"].items()
        if path.startswith(mobile)
        for method, operation in item.items()
    }
    phone = [{"phoneToken": []}]
    assert security == {
        ("post", "/device"): [{"basicAuth": []}, {"userCode": []}, {"privateToken": []}],
        ("get", "/device"): [*phone, {}],
        ("patch", "/device"): phone,
        ("get", "/user/code"): [{"basicAuth": []}],
        ("patch", "/user/password"): phone,
        ("get", "/message"): phone,
        ("patch", "/message"): phone,
        ("get", "/webhooks"): phone,
        ("post", "/hooks/{device_id}/{secret}"): [],
        ("get", "/settings"): phone,
        ("get", "/events"): phone,
    }
    with running(make_settings(tmp_path / "anonymous", anonymous_registration=True)) as open_:
        registration = openapi(open_)["paths"][f"{mobile}/device"]["post"]["security"]
        assert registration[-1] == {}


# What schemathesis found the document allowed and the server refused: now the document
# says no as well (and the server still does), or the server accepts.


def body_schema(document: dict[str, Any], method: str, path: str) -> jsonschema_rs.Validator:
    content = document["paths"][path][method]["requestBody"]["content"]["application/json"]
    return jsonschema_rs.Draft202012Validator(
        {**content["schema"], "components": document["components"]}
    )


SMS = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "Hi"}}
LINK = {"host": "127.0.0.1", "port": 2775, "systemId": "fuzz"}
REPORT = {"id": "m1", "state": "Sent", "recipients": [{"phoneNumber": "+1", "state": "Sent"}]}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/3rdparty/v1/messages", {**SMS, "mmsMessage": {}}),
        ("post", "/api/3rdparty/v1/messages", {"phoneNumbers": ["+12025550100"]}),
        ("post", "/api/3rdparty/v1/messages", {**SMS, "message": "Hi"}),
        (
            "post",
            "/api/3rdparty/v1/messages",
            {**SMS, "ttl": 60, "validUntil": "2099-01-01T00:00:00Z"},
        ),
        ("post", "/api/3rdparty/v1/messages", {**SMS, "phoneNumbers": ["+12025550100"] * 2}),
        (
            "post",
            "/api/3rdparty/v1/messages",
            {"phoneNumbers": ["+12025550100"], "dataMessage": {"data": "\u00c4AAA", "port": 1}},
        ),
        ("post", "/api/3rdparty/v1/auth/token", {"scopes": ["0"]}),
        ("post", "/api/3rdparty/v1/auth/token", {"scopes": ["messages:send"] * 33}),
        ("put", "/api/3rdparty/v1/settings", 0),
        ("patch", "/api/3rdparty/v1/settings", 0),
        ("patch", "/api/3rdparty/v1/settings", {"nope": {}}),
        ("patch", "/api/3rdparty/v1/settings", {"messages": {"nope": 1}}),
        ("patch", "/api/3rdparty/v1/settings", {"messages": {"limit_value": 0}}),
        ("patch", "/api/3rdparty/v1/settings", {"messages": {"work_hours_start": "\uff11:00"}}),
        ("post", "/api/3rdparty/v1/webhooks", {"url": "https://example.com/h", "event": ""}),
        ("post", "/api/3rdparty/v1/webhooks", {"url": "0", "event": "sms:received"}),
        ("patch", "/api/mobile/v1/message", [{**REPORT, "states": {"Sent": 0}}]),
        ("post", "/api/3rdparty/v1/links", {**LINK, "host": "  "}),
        ("post", "/api/3rdparty/v1/links", {**LINK, "source": "Ümlaut"}),
        ("post", "/api/3rdparty/v1/links", {**LINK, "dataCoding": 2}),
        ("post", "/api/3rdparty/v1/links", {**LINK, "bindMode": "tx"}),
        ("post", "/api/3rdparty/v1/links", {**LINK, "name": "n" * 129}),
    ],
)
def test_a_body_the_server_refuses_is_one_the_published_schema_refuses(
    server: LiveServer, method: str, path: str, body: Any
) -> None:
    assert not body_schema(openapi(server), method, path).is_valid(body)
    account = server.create_user("owner")
    token = register_phone(server, account)["token"]
    auth: Any = (account.login, account.password)
    headers = {"Authorization": f"Bearer {token}"} if "/mobile/" in path else {}
    response = httpx.request(
        method,
        f"{server.url}{path}",
        json=body,
        auth=None if headers else auth,
        headers=headers,
        verify=TLS,
    )
    assert response.status_code == 400, response.text
    assert response.json()["message"]


def test_an_integer_may_be_written_with_a_zero_fraction_as_json_schema_reads_it(
    server: LiveServer,
) -> None:
    """`60.0` is the JSON Schema integer 60 (schemathesis sent `"slotIndex": 13.0`); `60.5`,
    `true` and `"60"` are still refused."""
    account = server.create_user("owner")
    auth = (account.login, account.password)
    api = f"{server.url}/api/3rdparty/v1"
    sim = {"slotIndex": 0.0, "simNumber": 1.0}
    phone = httpx.post(
        f"{server.url}/api/mobile/v1/device", json={"simCards": [sim]}, auth=auth, verify=TLS
    )
    assert phone.status_code == 201, phone.text
    sent = httpx.post(
        f"{api}/messages",
        json={**SMS, "ttl": 60.0, "priority": 5.0, "simNumber": 1.0},
        auth=auth,
        verify=TLS,
    )
    assert sent.status_code == 200, sent.text
    assert (sent.json()["priority"], sent.json()["simNumber"]) == (5, 1)
    data = {"phoneNumbers": ["+12025550101"], "dataMessage": {"data": "AAAA", "port": 53.0}}
    assert httpx.post(f"{api}/messages", json=data, auth=auth, verify=TLS).status_code == 200
    changed = httpx.patch(
        f"{api}/settings", json={"messages": {"limit_value": 10.0}}, auth=auth, verify=TLS
    )
    assert changed.status_code == 200, changed.text
    assert (
        repr(httpx.get(f"{api}/settings", auth=auth, verify=TLS).json()["messages"]["limit_value"])
        == "10"
    )
    token = httpx.post(
        f"{api}/auth/token", json={"scopes": ["all:any"], "ttl": 60.0}, auth=auth, verify=TLS
    )
    assert token.status_code == 201, token.text
    for wrong in (60.5, True, "60"):
        refused = httpx.post(f"{api}/messages", json={**SMS, "ttl": wrong}, auth=auth, verify=TLS)
        assert refused.status_code == 400 and refused.json()["message"].startswith("ttl: ")


def test_the_rules_json_schema_cannot_state_are_stated_in_the_document(
    server: LiveServer,
) -> None:
    """What tests/schemathesis_hooks.py teaches the fuzzer, a client reads in the document."""
    document = openapi(server)
    schemas = document["components"]["schemas"]
    listing = document["paths"]["/api/3rdparty/v1/messages"]["get"]["parameters"]
    described = {parameter["name"]: parameter.get("description", "") for parameter in listing}
    assert "not both" in described["skip"] and "not both" in described["offset"]
    assert "`since` ≤ `until`" in schemas["RefreshIn"]["description"]
    for kind in ("messages", "inbox"):
        export = document["paths"][f"/api/3rdparty/v1/exports/{kind}"]["get"]["parameters"]
        assert "at most 366 days" in {p["name"]: p["description"] for p in export}["to"]
    send = schemas["SendMessageRequest"]
    assert "in the future" in send["properties"]["validUntil"]["description"]
    assert "not after the expiry" in send["properties"]["scheduleAt"]["description"]
    assert "one of your phones" in send["description"]
    assert send["properties"]["phoneNumbers"]["items"]["format"] == "phone"
    assert "public host" in schemas["WebhookIn"]["properties"]["url"]["description"]
    settings = document["paths"]["/api/3rdparty/v1/settings"]["patch"]["requestBody"]
    assert "work_hours_enabled" in settings["content"]["application/json"]["schema"]["description"]


def test_a_wrong_method_answers_405_naming_every_method_of_the_path(
    server: LiveServer, alice: Account
) -> None:
    auth = (alice.login, alice.password)
    for prefix in ("/api/3rdparty/v1", "/3rdparty/v1"):
        by_id = httpx.request(
            "PUT", f"{server.url}{prefix}/messages/some-id", auth=auth, verify=TLS
        )
        assert by_id.status_code == 405
        assert by_id.json() == {"message": "Method Not Allowed"}
        assert by_id.headers["allow"] == "GET, DELETE"
        collection = httpx.request("PATCH", f"{server.url}{prefix}/messages", auth=auth, verify=TLS)
        assert collection.status_code == 405
        assert collection.headers["allow"] == "GET, POST"


# Regressions: what schemathesis found, each once a 500 or a wrong 2xx.


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("to=0.5", "to"),  # a number was read as a Unix timestamp
        ("from=1700000000", "from"),
        ("from=2026-01-01T00:00:00", "from"),  # no zone
        ("from=0001-01-01T00:00:00%2B01:00", "from"),  # before year 1 in UTC: was a 500
        ("to=9999-12-31T23:59:59-01:00", "to"),  # after year 9999 in UTC: was a 500
        ("skip=9223372036854775808", "skip"),  # past SQLite's 64-bit OFFSET: was a 500
        ("offset=99999999999999999999", "offset"),
    ],
)
def test_list_refuses_out_of_range_or_non_rfc3339_filters_with_400(
    api: httpx.Client, query: str, field: str
) -> None:
    response = api.get(f"/messages?{query}")
    assert response.status_code == 400
    assert response.json()["message"].startswith(f"{field}: ")


def test_list_accepts_rfc3339_filters_with_any_offset_and_the_largest_skip(
    api: httpx.Client,
) -> None:
    queries = [
        "from=2020-01-01T00:00:00Z&to=2099-01-01T00:00:00.123456%2B05:30",
        "from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z",
        "skip=9223372036854775807",
    ]
    for query in queries:
        response = api.get(f"/messages?{query}")
        assert response.status_code == 200, (query, response.text)
        assert response.json() == []


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"priority": False}, "priority"),  # a boolean was taken as 0
        ({"priority": "5"}, "priority"),
        ({"simNumber": True}, "simNumber"),
        ({"ttl": 60.5}, "ttl"),
        ({"withDeliveryReport": 1}, "withDeliveryReport"),
        ({"isEncrypted": "false"}, "isEncrypted"),
        ({"validUntil": 4102444800}, "validUntil"),  # a number was read as a Unix timestamp
        ({"validUntil": "9999-12-31T23:59:59-01:00"}, "validUntil"),  # was a 500
        ({"scheduleAt": "9999-12-31T23:59:59-01:00"}, "scheduleAt"),  # was a 500
    ],
)
def test_send_refuses_values_of_the_wrong_json_type_or_range_with_400(
    api: httpx.Client, extra: dict[str, Any], field: str
) -> None:
    body = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "Hi"}} | extra
    response = api.post("/messages", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(f"{field}: ")
    assert api.get("/messages").json() == []


def test_send_reads_a_zoned_valid_until_as_the_same_instant_in_utc(api: httpx.Client) -> None:
    body = {
        "phoneNumbers": ["+12025550100"],
        "textMessage": {"text": "Hi"},
        "validUntil": "2099-12-31T23:59:59+05:00",
    }
    response = api.post("/messages", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["validUntil"] == "2099-12-31T18:59:59.000Z"


def test_a_repeated_query_parameter_is_refused_with_400(api: httpx.Client) -> None:
    response = api.get("/messages?deviceId=a&deviceId=b&limit=5")
    assert response.status_code == 400
    assert response.json() == {"message": "deviceId: give this query parameter once, not 2 times"}
