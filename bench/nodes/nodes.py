"""Real `smsgw serve` nodes for the benchmark: each its own process, data directory and port
on 127.0.0.1, all on one database with one JWT secret (bench/fleet/server.py starts each)."""

from __future__ import annotations

from pathlib import Path

from bench.fleet.server import Server
from bench.ingest.__main__ import LOGIN

#: Every node signs and checks tokens with it (docs/deployment.md: one secret for all).
JWT_SECRET = "bench-nodes-jwt-secret-" + "x" * 40


class Nodes:
    """Nodes on `database_url`, started and stopped one at a time (`resize`); the first
    one started makes the benchmark's account (`smsgw users create`, which migrates)."""

    def __init__(self, root: Path, database_url: str | None, settings: dict[str, str]) -> None:
        """`database_url` None: SQLite in the first node's data directory (one node only)."""
        self.root = root
        # Phones' budgets on but never reached (bench/fleet/server.py says why).
        budget = {"SMSGW_PHONE_PARTS_PER_MINUTE": "1000000"}
        self.settings = {"SMSGW_JWT_SECRET": JWT_SECRET, "SMSGW_WORKERS": "1"} | budget | settings
        if database_url is not None:
            self.settings["SMSGW_DATABASE_URL"] = database_url
        self.running: list[Server] = []
        self._started = 0

    def resize(self, count: int) -> list[Server]:
        """Start or stop nodes (the newest first) until `count` run; the running ones."""
        while len(self.running) > count:
            self.running.pop().stop()
        while len(self.running) < count:
            self._started += 1
            name = f"node-{self._started}"
            logins = [LOGIN] if self._started == 1 else []
            server = Server(self.root / name, self.root / f"{name}.log", logins, self.settings)
            self.running.append(server)
        return list(self.running)

    def stop(self) -> None:
        self.resize(0)
