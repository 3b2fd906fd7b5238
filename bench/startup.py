"""`python -m bench.startup [--starts N]`: the CPU one server takes from its process's start
to its first answer of `GET /health` and its stop (SIGINT), as every test that starts a
server pays it (docs/performance.md, "A server's start-up").

Two servers, started alternately N times each, every start on a fresh port:

- smsgw: `python -m smsgw serve` on SQLite, its data directory made by one start before
  the measured ones (so no first account or migration is counted);
- the baseline: a bare FastAPI application with only `/health`, served by uvicorn, as
  anyone would start one: what the interpreter and the frameworks cost by themselves.

Each start's CPU is the process's own (user + system, read with `os.wait4` as it is reaped).
Printed: the medians, and smsgw's ratio to the baseline. Results: bench/results/startup-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.common import READY_SECONDS, RESULTS_DIR, free_port, machine, results_stamp

#: The baseline: FastAPI and uvicorn with one route (argv[1]: the port).
BARE = (
    "import sys, uvicorn\n"
    "from fastapi import FastAPI\n"
    "app = FastAPI()\n"
    "app.get('/health')(lambda: {'status': 'pass'})\n"
    "uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')\n"
)


def start_cpu(command: list[str], port: int, env: dict[str, str]) -> float:
    """Start `command` (a server on `port`), wait for its first 200 on /health, stop it with
    SIGINT; the CPU seconds it used, start to exit."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + READY_SECONDS
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited ({process.returncode}) before answering")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command} did not answer in {READY_SECONDS} s") from None
                time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        return usage.ru_utime + usage.ru_stime
    finally:
        if process.returncode is None:
            process.kill()
            process.wait()


def measure(starts: int, data_dir: Path) -> dict[str, list[float]]:
    """`starts` alternate starts of each server: their CPU seconds, by server."""
    env = os.environ | {"SMSGW_DATA_DIR": str(data_dir), "SMSGW_LOG_LEVEL": "warning"}
    smsgw = [sys.executable, "-m", "smsgw", "serve"]

    def serve_smsgw() -> float:
        port = free_port()
        return start_cpu(smsgw, port, env | {"SMSGW_PORT": str(port)})

    def serve_bare() -> float:
        port = free_port()
        return start_cpu([sys.executable, "-c", BARE, str(port)], port, env)

    serve_smsgw()  # makes the database and the first account: not what a start costs
    figures: dict[str, list[float]] = {"smsgw": [], "bare": []}
    for _ in range(starts):
        figures["smsgw"].append(serve_smsgw())
        figures["bare"].append(serve_bare())
    return figures


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--starts", type=int, default=5, help="of each server (default 5)")
    args = parser.parse_args(argv)
    if args.starts < 1:
        parser.error("--starts is at least 1")
    with tempfile.TemporaryDirectory(prefix="smsgw-startup-") as scratch:
        figures = measure(args.starts, Path(scratch) / "data")
    smsgw, bare = (statistics.median(figures[name]) for name in ("smsgw", "bare"))
    result: dict[str, object] = {
        "starts": args.starts,
        "cpu_seconds": figures,
        "median_smsgw": smsgw,
        "median_bare": bare,
        "ratio": smsgw / bare,
        "machine": machine(),
    }
    out = RESULTS_DIR / f"startup-{results_stamp()}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"CPU from a server's start to its first /health and its stop, {args.starts} each:")
    print(f"  smsgw serve  {smsgw:.2f} s (median; {min(figures['smsgw']):.2f}-"
          f"{max(figures['smsgw']):.2f})")  # fmt: skip
    print(f"  bare FastAPI {bare:.2f} s; smsgw / bare {smsgw / bare:.1f}x")
    print(f"results: {out}")
    return result


if __name__ == "__main__":
    main()
