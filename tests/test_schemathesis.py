"""smsgw against its own OpenAPI document, fuzzed by schemathesis (its CLI, as users run it).

Two runs, each against a fresh server and bounded by a fixed seed and example count:

* every operation: no 5xx, every status, body, content type and header as documented,
  schema-violating requests refused, auth enforced, `Allow` honest on 405;
* the by-id operations: every schema-valid request is also accepted (`positive_data_acceptance`).
  It is not run on `POST /messages` (a schema cannot say which strings are real phone numbers,
  nor that `deviceActiveWithin` needs a phone seen lately) nor on the list (`skip` and
  `offset` together are refused when they differ), where 400 is the right answer.

`use_after_free` is left out on purpose: `DELETE /messages/{id}` cancels a message, it does not
delete it, so reading it back afterwards rightly answers 200 with state Cancelled.

The regressions at the end are what earlier runs found, pinned as plain requests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsgw.config import Settings
from tests.conftest import Account, LiveServer, make_settings

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
SEED = "20261127"
CONFORMANCE_CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "ignored_auth",
    "unsupported_method",
    "allow_header_conformance",
]
ACCEPTANCE_CHECKS = [
    "positive_data_acceptance",
    "not_a_server_error",
    "status_code_conformance",
    "response_schema_conformance",
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The fuzzer sends wrong credentials hundreds of times on purpose and expects 401 each
    time; the sign-in throttle would rightly answer 429 (tests/test_auth_throttle.py)."""
    return make_settings(tmp_path / "data", auth_failures_per_address=0, auth_failures_per_login=0)


def run_schemathesis(
    server: LiveServer, account: Account, workdir: Path, checks: list[str], *extra: str
) -> None:
    """Run the schemathesis CLI against the live server; fail with its report if it fails."""
    if not SCHEMATHESIS.exists():
        pytest.fail(f"{SCHEMATHESIS} is missing; install the dev extras (pip install -e '.[dev]')")
    config = workdir / "schemathesis.toml"
    config.write_text("[cache]\nenabled = false\n")  # no state carried between runs
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{server.url}/openapi.json",
        "--url",
        server.url,
        "--auth",
        f"{account.login}:{account.password}",
        "--checks",
        ",".join(checks),
        "--seed",
        SEED,
        "--generation-database",
        "none",
        "--continue-on-failure",
        # The credentials are given above; do not also fuzz (or "omit") the Authorization
        # header as if it were a parameter: --auth puts it back, which would make a run
        # that meant to drop it look like one the server wrongly accepted.
        "--generation-with-security-parameters",
        "false",
        "--request-timeout",
        "10",
        *extra,
    ]
    result = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=240, check=False
    )
    report = f"exit code {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, report
    assert " passed" in result.stdout, report


def test_schemathesis_finds_no_server_error_or_undocumented_answer_on_any_operation(
    server: LiveServer, tmp_path: Path
) -> None:
    account = server.create_user("fuzzer")
    run_schemathesis(server, account, tmp_path, CONFORMANCE_CHECKS, "--max-examples", "40")


def test_schemathesis_sees_every_schema_valid_message_id_accepted(
    server: LiveServer, tmp_path: Path
) -> None:
    account = server.create_user("fuzzer")
    run_schemathesis(
        server,
        account,
        tmp_path,
        ACCEPTANCE_CHECKS,
        "--include-operation-id-regex",
        "^(get|cancel)Messages?$",  # GET and DELETE /messages/{id}, both paths
        "--max-examples",
        "30",
    )


# The OpenAPI document itself: the error answers it promises.


def openapi(server: LiveServer) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/openapi.json", timeout=10)
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


def test_a_wrong_method_answers_405_naming_every_method_of_the_path(
    server: LiveServer, alice: Account
) -> None:
    auth = (alice.login, alice.password)
    for prefix in ("/api/3rdparty/v1", "/3rdparty/v1"):
        by_id = httpx.request("PUT", f"{server.url}{prefix}/messages/some-id", auth=auth)
        assert by_id.status_code == 405
        assert by_id.json() == {"message": "Method Not Allowed"}
        assert by_id.headers["allow"] == "GET, DELETE"
        collection = httpx.request("PATCH", f"{server.url}{prefix}/messages", auth=auth)
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
        ({"ttl": 60.0}, "ttl"),
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
