"""The SMSC simulator (tests/fakes/smsc-sim.js on the npm `smpp` package, which `make test`
installs in tests/npm) as a process on free 127.0.0.1 ports, with its HTTP controls."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients import TLS
from tests.conftest import free_port

SCRIPT = Path(__file__).with_name("smsc-sim.js")
MODULES = Path(__file__).parents[1] / "npm" / "node_modules"
USER, PASSWORD = "smsgw", "secret"


class Smsc:
    """A running simulator: SMPP on `port`, controls on `control` (see smsc-sim.js)."""

    def __init__(self, dlr_delay_ms: int = 50) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is not installed; the SMPP tests need it (apt-get install nodejs)")
        if not (MODULES / "smpp").is_dir():
            pytest.fail(
                "the npm smpp package is not installed; run `make test` (npm ci in tests/npm)"
            )
        self.node = node
        self.dlr_delay_ms = dlr_delay_ms
        self.process: subprocess.Popen[str] | None = None
        self.port = self.control = 0

    def start(self) -> Smsc:
        for _ in range(5):  # a free port can be taken before the simulator binds it
            self.port, self.control = free_port(), free_port()
            env = os.environ | {
                "NODE_PATH": str(MODULES), "SMSC_PORT": str(self.port),
                "CONTROL_PORT": str(self.control), "SMSC_USER": USER, "SMSC_PASS": PASSWORD,
                "DLR_DELAY_MS": str(self.dlr_delay_ms),
            }  # fmt: skip
            self.process = subprocess.Popen(
                [self.node, str(SCRIPT)], env=env, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            assert self.process.stdout is not None
            line = self.process.stdout.readline()  # "ready", or the error it died of
            if line.strip() == "ready" and self.process.poll() is None:
                return self
            self.process.wait(timeout=10)
        raise RuntimeError(f"the SMSC simulator did not start: {line}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()

    def _get(self, path: str, **params: Any) -> Any:
        answer = httpx.get(
            f"http://127.0.0.1:{self.control}{path}", params=params, timeout=10, verify=TLS
        )
        answer.raise_for_status()
        return answer.json()

    def submits(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._get("/submits")
        return found

    def binds(self) -> dict[str, Any]:
        """Counts of binds (`ok`, `refused`), `unbinds`, sessions `broken` (closed on a PDU
        the simulator could not read), sessions `bound` now; `kinds` of
        those (sorted: "receiver", "transceiver", "transmitter"), `unbound`: the kinds of
        the sessions that unbound, `delivers`: deliver_sm sent to each kind,
        `system_types`: each accepted bind's system_type, `enquires`: the enquire_link
        the sessions sent, `enquire_answers`: their answers to `enquire`'s."""
        found: dict[str, Any] = self._get("/binds")
        return found

    def mo(self, sender: str, text: str = "", **fields: str) -> int:
        """Send an MO to every receiving session (how many got it); `fields`: smsc-sim.js's
        `moFields` (hex, esm, dc, sar, payload)."""
        return int(self._get("/mo", **{"from": sender, "text": text, **fields})["sessions"])

    def throttle(self, count: int, status: int | None = None) -> None:
        """The next `count` submit_sm are answered ESME_RTHROTTLED (or `status`)."""
        self._get("/throttle", n=count, **({} if status is None else {"status": status}))

    def enquire(self) -> int:
        """An enquire_link to every bound session (how many); /binds counts the answers."""
        return int(self._get("/enquire")["sessions"])

    def nack(self, count: int) -> None:
        """The next `count` submit_sm get a generic_nack (ESME_RINVCMDLEN), not an answer."""
        self._get("/nack", n=count)

    def nack_with(self, count: int, status: int) -> None:
        """The next `count` submit_sm get a generic_nack with this command_status."""
        self._get("/nack", n=count, status=status)

    def ids(self, *given: str) -> None:
        """The next submit_sm_resp give these message_ids, in order (then the counter's)."""
        self._get("/ids", list=",".join(given))

    def receipts(self, on: bool) -> None:
        """Whether the simulator sends receipts by itself (it does at start)."""
        self._get("/receipts", on="1" if on else "0")

    def receipt(self, smsc_id: str, **fields: str) -> int:
        """Send a receipt (esm_class 0x04) for `smsc_id` to every receiving session (how
        many got it); `fields`: stat, err, state (message_state), tlv ("0": no
        receipted_message_id)."""
        return int(self._get("/receipt", id=smsc_id, **fields)["sessions"])

    def hold(self, on: bool) -> None:
        self._get("/hold", on="1" if on else "0")

    def release(self) -> int:
        """Answer the held submit_sm of sessions still open (and hold no more)."""
        return int(self._get("/release")["released"])

    def count(self) -> int:
        """How many submit_sm the simulator has seen."""
        return int(self._get("/count")["submits"])

    def drop(self, kind: str | None = None) -> int:
        """Destroy the sockets of every session, or of those bound as `kind`."""
        return int(self._get("/drop", **({"kind": kind} if kind else {}))["dropped"])


def wait_until(check: Any, within: float = 30, what: str = "condition") -> None:
    """Wait until `check()` is true (polled), failing after `within` seconds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what}: not reached in {within} s"
        time.sleep(0.02)
