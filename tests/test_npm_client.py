"""The official npm client (`android-sms-gateway` 3.0.0) against a running smsgw.

That client is the legacy one: `POST /message` (singular) with a plain `message` string and
`GET /message/{id}`. tests/npm/send.mjs drives it with a fetch-based HTTP client; `make test`
installs it (`npm ci` in tests/npm). Node is required: CI installs it, so no skipping here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Account, LiveServer

NPM_DIR = Path(__file__).parent / "npm"
SCRIPT = NPM_DIR / "send.mjs"
NUMBER = "+12025550100"


def run_client(base_url: str, login: str, password: str, text: str) -> tuple[int, dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed; the npm client test needs it (apt-get install nodejs)")
    if not (NPM_DIR / "node_modules" / "android-sms-gateway").is_dir():
        pytest.fail("the npm client is not installed; run `make test` (npm ci in tests/npm)")
    result = subprocess.run(
        [node, str(SCRIPT), base_url, login, password, NUMBER, text],
        cwd=NPM_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode in (0, 1), f"node failed:\n{result.stdout}\n{result.stderr}"
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output from node:\n{result.stderr}"
    return result.returncode, json.loads(lines[-1])


@pytest.mark.parametrize("prefix", ["/3rdparty/v1", "/api/3rdparty/v1"])
def test_the_npm_client_sends_with_the_legacy_message_field_and_reads_the_state(
    server: LiveServer, alice: Account, prefix: str
) -> None:
    text = "Hello from the npm client, ünïcode ✓"
    code, output = run_client(server.url + prefix, alice.login, alice.password, text)

    assert code == 0, output
    sent, state = output["sent"], output["state"]
    assert sent["state"] == "Pending"
    assert sent["recipients"] == [{"phoneNumber": NUMBER, "state": "Pending", "error": None}]
    assert state["id"] == sent["id"]
    assert state["recipients"] == sent["recipients"]
    assert [(r["method"], r["url"].removeprefix(server.url)) for r in output["requests"]] == [
        ("POST", f"{prefix}/message"),
        ("GET", f"{prefix}/message/{sent['id']}"),
    ]
    with server.client(alice) as api:
        stored = api.get(f"/messages/{sent['id']}")
    assert stored.status_code == 200
    assert stored.json()["textMessage"] == {"text": text}
    assert stored.json()["recipients"][0]["phoneNumber"] == NUMBER


def test_the_npm_client_sees_401_with_a_wrong_password(server: LiveServer, alice: Account) -> None:
    code, output = run_client(server.url + "/3rdparty/v1", alice.login, "wrong", "Not sent")

    assert code == 1
    assert output["error"]["status"] == 401
    assert output["error"]["body"]["message"]
    with server.client(alice) as api:
        assert api.get("/messages").json() == []
