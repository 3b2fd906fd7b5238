"""`smsgw serve` told to stop (SIGTERM) while phones hold their event streams: the streams end
cleanly at once (the phones reconnect) and the process exits without waiting them out."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from smsgw.app import cancel_and_wait
from tests.clients import TLS
from tests.conftest import Account, create_account, database_environment, free_port, make_settings
from tests.test_mobile_api import APP, MOBILE, basic, register

PHONES = 3
#: uvicorn's own patience (cli/serve.py) is 5 s; the streams must not make the stop wait it out
#: (uvicorn says so in its log when it does: checked below, whatever the machine's load). The
#: stop takes well under a second on an idle machine; this bound only catches a stop that
#: hangs on something else, with room for a machine so loaded that exiting takes seconds
#: (6.3 s was seen with a load average of 9 on 2 cores).
STOP_BOUND = 20.0


def start(data_dir: Path, port: int, workers: int) -> subprocess.Popen[str]:
    env = os.environ | {
        **database_environment(make_settings(data_dir)),
        "SMSGW_DATA_DIR": str(data_dir),
        "SMSGW_PORT": str(port),
        "SMSGW_WORKERS": str(workers),
        "SMSGW_BOOTSTRAP_ACCOUNT": "false",
        "SMSGW_REGISTRATION_RATE_LIMIT": "0",
        "SMSGW_SSE_KEEPALIVE_SECONDS": "600",  # nothing else would end a stream
        "SMSGW_LOG_LEVEL": "info",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "smsgw", "serve"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.communicate()[0]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/startup", verify=TLS).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "smsgw did not start"
        time.sleep(0.1)


def open_stream(port: int, token: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {**APP, "Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    connection.request("GET", f"{MOBILE}/events", headers=headers)
    response = connection.getresponse()
    assert response.status == 200
    assert response.readline().startswith(b"event: ")  # the stream is open and talking
    return response


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_ends_phone_streams_and_exits_promptly(tmp_path: Path, workers: int) -> None:
    data_dir, port = tmp_path / "data", free_port()
    process = start(data_dir, port, workers)
    try:
        create_account(make_settings(data_dir), "owner", "correct horse battery")
        base = f"http://127.0.0.1:{port}{MOBILE}"
        with httpx.Client(base_url=base, headers=APP, timeout=30, verify=TLS) as client:
            owner = basic(Account("owner", "correct horse battery"))
            tokens = []
            for _ in range(PHONES):
                answer = register(client, owner)
                assert answer.status_code == 201, answer.text
                tokens.append(answer.json()["token"])
        streams = [open_stream(port, token) for token in tokens]
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        for stream in streams:
            stream.read()  # to the end of the chunked body: IncompleteRead if cut off
        output, _ = process.communicate(timeout=30)
        took = time.monotonic() - began
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # uvicorn re-raises the signal once it has shut down cleanly (one process); the
    # supervisor of several exits 0.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output, output
    assert "timeout graceful shutdown exceeded" not in output, output
    assert took < STOP_BOUND, f"stopped in {took:.2f} s\n{output}"
    print(f"stopped in {took:.2f} s with {PHONES} streams open ({workers} processes)")


def test_a_worker_that_swallows_a_cancel_is_still_stopped() -> None:
    """Python 3.11's wait_for can lose a cancel (the workers wait with it): the stop cancels
    again until the task has ended, rather than wait for it forever."""

    async def scenario() -> int:
        swallowed = 0

        async def stubborn() -> None:
            nonlocal swallowed
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    if swallowed:
                        raise
                    swallowed += 1  # as a lost cancel: the loop runs on

        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        await asyncio.wait_for(cancel_and_wait(task), 30)
        assert task.cancelled()
        return swallowed

    assert asyncio.run(scenario()) == 1
