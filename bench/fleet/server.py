"""One real smsgw process for the benchmark: fresh data directory, account(s), loopback only."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.common import READY_SECONDS, free_port, listening_inodes, socket_inodes

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "bench-password-0123"  # throwaway accounts in a throwaway database


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1_048_576 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` (or one of its descendants: with SMSGW_WORKERS > 1, its server
    processes) holds a socket listening on `port` where a bind of 127.0.0.1 would meet it
    (Linux's /proc; True elsewhere, where it cannot be told)."""
    if not Path("/proc/net/tcp").exists():
        return True
    return bool(listening_inodes(port) & socket_inodes(pid))


def rss_bytes(pid: int) -> int | None:
    """Resident set size (VmRSS) of a process, from /proc; None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Server:
    """`python -m smsgw serve` in its own process, stopped on exit."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        logins: list[str],
        settings: dict[str, str] | None = None,
    ) -> None:
        """`settings`: more `SMSGW_*` variables for this server (they win over the defaults)."""
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
        env.update(
            SMSGW_HOST="127.0.0.1",
            SMSGW_PORT=str(self.port),
            SMSGW_DATA_DIR=str(data_dir),
            SMSGW_BOOTSTRAP_ACCOUNT="false",
            SMSGW_LOG_LEVEL="warning",
            SMSGW_REGISTRATION_RATE_LIMIT="0",
            # Phones' budgets on (their statements are part of what a pull costs), but never
            # reached: the phones here send thousands of parts a minute each.
            SMSGW_PHONE_PARTS_PER_MINUTE="1000000",
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        )
        env.update(settings or {})
        self.env = env
        for login in logins:
            done = subprocess.run(
                [sys.executable, "-m", "smsgw", "users", "create", login, "--password", PASSWORD],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                sys.exit(f"bench: could not create the account:\n{done.stdout}{done.stderr}")
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "smsgw", "serve"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=raise_nofile,  # the child may hold 10,000+ sockets
            )
        self._wait_ready()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"bench: the server exited early:\n{self.log()}")
            # Ours, not another process's that took the port `free_port` found free (the
            # tests run benchmarks beside servers of their own): our process holds the socket.
            if listens_on(self.process.pid, self.port):
                try:
                    if httpx.get(f"{self.base_url}/openapi.json", timeout=10).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        self.stop()
        sys.exit(f"bench: the server did not answer within {READY_SECONDS} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
