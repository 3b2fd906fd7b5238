"""py-spy on a running server: record its stacks over a phase, then the functions where the
time went (own time, and time including callees), as docs/performance.md shows them.

Only samples of a thread holding the GIL are taken (`--gil`): where the server's Python
code spends CPU, not where its threads wait."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


class Recording:
    """`py-spy record` of `pid` (and its subprocesses) into `out` (collapsed stacks)."""

    def __init__(self, pid: int, out: Path, rate: int = 250) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.out = out
        self.process = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--subprocesses", "--rate", str(rate),
             "--format", "raw", "--output", str(out), "--nonblocking", "--gil"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        _, errors = self.process.communicate(timeout=60)
        if not self.out.exists():
            raise RuntimeError(f"py-spy wrote nothing: {errors.decode(errors='replace')}")


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rpartition(" ")
    return stack.split(";"), int(count) if count.isdigit() else 0


def top(collapsed: Path, lines: int = 15) -> str:
    """The `lines` functions with the most samples of their own, and those with the most
    samples including their callees (smsgw's own functions only), as a text table."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    # Lines end at a newline only: py-spy, sampling without stopping the process, now and
    # then reads a frame's name half-written, with a carriage return or other bytes that
    # text mode and str.splitlines() take for line breaks.
    for line in collapsed.read_bytes().decode(errors="replace").split("\n"):
        frames, count = _frames(line)
        if not count:
            continue
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        samples += count
        if frames:
            own[_short(frames[-1])] += count
        for name in {_short(f) for f in frames if "smsgw/" in f and not _outer(f)}:
            total[name] += count
    out = [f"{samples} samples; own time:"]
    out += [f"  {n * 100 / samples:5.1f}%  {name}" for name, n in own.most_common(lines)]
    out.append("including callees (smsgw's functions):")
    out += [f"  {n * 100 / samples:5.1f}%  {name}" for name, n in total.most_common(lines)]
    return "\n".join(out)


def _outer(frame: str) -> bool:
    """A frame every sample has (the command that starts the server)."""
    return "smsgw/cli/" in frame or "smsgw/__main__" in frame


def _short(frame: str) -> str:
    """`function (path/to/file.py:line)` -> `function (file.py)`: one entry per function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    tail = (
        "/".join(parts[parts.index("smsgw") + 1 :])
        if "smsgw" in parts
        else parts[-1]
        if parts
        else ""
    )
    return f"{name} ({tail})"
