"""A real HTTP receiver of webhooks on 127.0.0.1: records each request, answers as scripted.

`statuses` is a queue of answers (then `default`), `delays` a queue of seconds to wait before
answering (a hanging endpoint); `stop()` and `start()` again take the
receiver down and bring it back on the same port (an endpoint that was down for a while).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a hanging answer


class Receiver:
    def __init__(
        self,
        statuses: list[int] | None = None,
        default: int = 200,
        delays: list[float] | None = None,
    ) -> None:
        self.statuses: deque[int] = deque(statuses or [])
        self.delays: deque[float] = deque(delays or [])
        self.default = default
        self.requests: list[Received] = []
        self.port = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            delay = self.delays.popleft() if self.delays else 0.0
        time.sleep(delay)
        with self._lock:
            status = self.statuses.popleft() if self.statuses else self.default
            self.requests.append(Received(path, headers, body, status))
        return status

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status = receiver._answer(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def delivered(self, event: str | None = None) -> list[Received]:
        """Requests answered 2xx (of one event when given)."""
        with self._lock:
            found = [r for r in self.requests if 200 <= r.status < 300]
        return [r for r in found if event is None or r.json()["event"] == event]
