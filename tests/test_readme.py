"""README.md (and the mobile-API walk-through at the end of docs/phones.md) run as written:
their curl lines, Python snippet and CLI lines, extracted from the files, against a running
smsgw, so that the documents cannot drift from what the server does."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Account, LiveServer
from tests.test_cli import environment

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PHONES = (ROOT / "docs" / "phones.md").read_text(encoding="utf-8")
WORKED = PHONES.split("## Worked example: the mobile API without the app")[1]
DOCUMENTED = "http://127.0.0.1:3000"
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def commands(text: str, program: str) -> list[list[str]]:
    """Every command line of the text that runs `program`, in the order written: in sh blocks
    (continuation lines joined, trailing comments dropped) or inline in backticks."""
    found = []
    code = re.findall(rf"```sh\n(.*?)```|`({re.escape(program)} [^`\n]+)`", text, re.S)
    for block in (fenced or inline for fenced, inline in code):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv and argv[0] == program:
                found.append(argv)
    return found


class Curl:
    """Runs documented curl lines with their placeholders filled in: what a reader does."""

    def __init__(self, server: LiveServer, account: Account) -> None:
        self.server = server
        self.values = {"LOGIN:PASSWORD": f"{account.login}:{account.password}"}

    def fill(self, arg: str) -> str:
        arg = arg.replace(DOCUMENTED, self.server.url).replace(
            "https://YOUR-HOST/api", self.server.url + "/api"
        )
        arg = arg.replace("YOUR-RECEIVER", "example.org")  # a webhook: registered, never called
        for placeholder, value in self.values.items():
            arg = re.sub(rf"(?<![\w-]){re.escape(placeholder)}(?![\w-])", value, arg)
        return arg

    def run(self, argv: list[str]) -> tuple[int, object]:
        filled = [self.fill(arg) for arg in argv]
        assert not [
            a for a in filled if re.search(r"\b(ID|ACCESS_TOKEN|PHONE_TOKEN|MESSAGE_ID)\b", a)
        ], filled
        done = subprocess.run(
            ["curl", "-sS", "-w", "\n%{http_code}", *filled[1:]],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, (filled, done.stderr)
        body, _, status = done.stdout.rpartition("\n")
        assert status.startswith("2"), (filled, status, body)
        return int(status), json.loads(body) if body.strip() else None


@needs_curl
def test_every_curl_line_of_the_readme_works(server: LiveServer, alice: Account) -> None:
    curl = Curl(server, alice)
    lines = commands(README, "curl")
    assert len(lines) >= 10
    for argv in lines:
        _, answer = curl.run(argv)
        if isinstance(answer, dict) and "recipients" in answer:  # a message: the first is ID
            curl.values.setdefault("ID", str(answer["id"]))
        if isinstance(answer, dict) and "access_token" in answer:
            curl.values["ACCESS_TOKEN"] = str(answer["access_token"])
    # The webhook example cleans up after itself: no hook is left retrying.
    _, hooks = curl.run(["curl", "-u", "LOGIN:PASSWORD", f"{DOCUMENTED}/api/3rdparty/v1/webhooks"])
    assert hooks == []


def test_the_python_snippet_of_the_readme_works(server: LiveServer, alice: Account) -> None:
    [snippet] = blocks(README, "python")
    code = snippet.replace('"LOGIN"', repr(alice.login)).replace('"PASSWORD"', repr(alice.password))
    code = code.replace(DOCUMENTED, server.url)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Pending" in done.stdout


def test_the_cli_lines_of_the_readme_work(tmp_path: Path) -> None:
    env = os.environ | environment(tmp_path / "data") | {"SMSGW_BOOTSTRAP_ACCOUNT": "false"}
    found: dict[str, str] = {}
    lines = commands(README, ".venv/bin/smsgw")
    assert len(lines) >= 8
    for line in README.splitlines():  # the files the examples read (people.csv)
        if line.startswith("printf ") and " > " in line:
            subprocess.run(["bash", "-c", line], cwd=tmp_path, check=True, timeout=10)
    for argv in lines:
        args = [found.get(arg, arg) for arg in argv[1:]]
        done = subprocess.run(
            [sys.executable, "-m", "smsgw", *args], env=env, capture_output=True, text=True,
            timeout=120, check=False, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        queued = re.search(r"queued (\S+)", done.stdout)
        if queued:
            found["ID"] = queued.group(1)
    assert "ID" in found


@needs_curl
def test_the_mobile_api_walk_through_of_docs_phones_works(
    server: LiveServer, alice: Account
) -> None:
    curl = Curl(server, alice)
    with server.client(alice) as api:
        sent = api.post(
            "/messages", json={"phoneNumbers": ["+12025550100"], "textMessage": {"text": "Hello!"}}
        )
    register, pull, report = commands(WORKED, "curl")
    _, phone = curl.run(register)
    assert isinstance(phone, dict)
    curl.values["PHONE_TOKEN"] = str(phone["token"])
    _, pulled = curl.run(pull)
    assert isinstance(pulled, list) and [m["id"] for m in pulled] == [sent.json()["id"]]
    curl.values["MESSAGE_ID"] = str(pulled[0]["id"])
    status, _ = curl.run(report)
    assert status == 204
    with server.client(alice) as api:
        assert api.get(f"/messages/{sent.json()['id']}").json()["state"] == "Sent"
