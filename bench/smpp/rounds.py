"""`python -m bench.smpp.rounds [FILE ...]`: every paced round bench/smpp has recorded, and
how many kept up, by the host's speed.

One run of bench/smpp says whether its rounds kept up at that moment; the machine's share of
its host's cores moves within minutes (docs/performance.md, "The host's speed, gauged"), so
whether the link keeps up at 1,000 a second is a question over many runs. This reads the
results (`bench/results/smpp-*.json` unless files are given) and prints each paced link round
(`--rate`): when, its rate, the host's gauge before it, what the API accepted, the simulator's
share of it during the load, smsgw's CPU a message, the CPU others took, and whether it kept
up (`keeps_up`: at least KEEP_UP of each). The totals count the rounds offered at least the
target (1,000 a second), by the host's gauge; a profiled round (`--profile`: py-spy beside
it) is shown but counted apart, and a run found invalid (a message lost, sent twice or not
Delivered) is named, whatever its rounds did. Unpaced runs are left out (they have no offered
rate to keep up with).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR
from bench.smpp.load import (
    KEEP_UP,
    PROFILED_ROUND,
    TARGET_SUBMITS_PER_S,
    WARMUP_ROUND,
    Phase,
    keeps_up,
)

#: The gauge's bands in the totals (ms; about 60 when the host runs at its usual speed).
BANDS = ((0.0, 75.0), (75.0, 110.0), (110.0, float("inf")))
BAND_NAMES = [f"gauge {lo:.0f}-{hi:.0f} ms" for lo, hi in BANDS[:-1]] + [
    f"gauge {BANDS[-1][0]:.0f}+ ms"
]
NOT_GAUGED, PROFILED = "not gauged", "profiled (py-spy beside it)"
#: The totals' order.
KEYS = [*BAND_NAMES, NOT_GAUGED, PROFILED]


@dataclass(frozen=True)
class Round:
    run: str  # the run's time stamp (its results file's)
    rate: float
    phase: Phase

    @property
    def profiled(self) -> bool:
        return self.phase.round == PROFILED_ROUND

    @property
    def kept_up(self) -> bool:
        return keeps_up(self.phase, self.rate)


def read(paths: list[Path]) -> tuple[list[Round], list[str]]:
    """The paced link rounds of these results (warm-ups left out), and the runs found
    invalid."""
    rounds: list[Round] = []
    invalid: list[str] = []
    for path in sorted(paths):
        result: dict[str, Any] = json.loads(path.read_text())
        rate = (result.get("settings") or {}).get("rate")
        if result.get("benchmark") != "smpp" or not rate:
            continue
        run = str(result.get("when", path.stem))
        if not result.get("valid", False):
            invalid.append(run)
        for phase in result["phases"]:
            if phase["name"] == "link" and phase["round"] != WARMUP_ROUND:
                rounds.append(Round(run, float(rate), Phase(**phase)))
    return rounds, invalid


def _band(gauge: float | None) -> str:
    if gauge is None:
        return NOT_GAUGED
    return next(name for (lo, hi), name in zip(BANDS, BAND_NAMES, strict=True) if lo <= gauge < hi)


def totals(rounds: list[Round]) -> dict[str, tuple[int, int]]:
    """(kept up, rounds) of those offered at least the target, by gauge band; profiled apart."""
    found: dict[str, tuple[int, int]] = {}
    for item in rounds:
        if item.rate < TARGET_SUBMITS_PER_S:
            continue
        key = PROFILED if item.profiled else _band(item.phase.host_gauge_ms)
        kept, count = found.get(key, (0, 0))
        found[key] = (kept + item.kept_up, count + 1)
    return found


def _cell(value: float | None, form: str) -> str:
    return "n/a" if value is None else format(value, form)


def report(rounds: list[Round], invalid: list[str]) -> str:
    lines = [
        f"{'run':<16} {'round':>5} {'rate':>6} {'host ms':>7} {'accept/s':>8} {'sim/acc':>7} "
        f"{'smsgw ms':>8} {'other%':>6}  kept up",
    ]
    for item in rounds:
        p = item.phase
        lines.append(
            f"{item.run:<16} {'prof' if item.profiled else p.round:>5} {item.rate:>6.0f} "
            f"{_cell(p.host_gauge_ms, '.1f'):>7} {p.accepted_per_s:>8.1f} "
            f"{_cell(p.ratio, '.3f'):>7} {_cell(p.server_cpu_ms_per_message, '.3f'):>8} "
            f"{_cell(p.other_cpu_percent, '.1f'):>6}  {'yes' if item.kept_up else 'NO'}"
        )
    lines.append("")
    lines.append(
        f"rounds offered at least {TARGET_SUBMITS_PER_S:.0f}/s that kept up "
        f"(at least {KEEP_UP}x of each):"
    )
    found = totals(rounds)
    for key in sorted(found, key=KEYS.index):
        kept, count = found[key]
        lines.append(f"  {key}: {kept} of {count}")
    if not found:
        lines.append("  none recorded")
    if invalid:
        lines.append(f"runs found invalid (a message lost, twice or not Delivered): {invalid}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.smpp.rounds",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument(
        "files", nargs="*", type=Path, help="bench/smpp results (bench/results/smpp-*.json)"
    )
    args = parser.parse_args(argv)
    paths = args.files or sorted(RESULTS_DIR.glob("smpp-*.json"))
    rounds, invalid = read(paths)
    print(report(rounds, invalid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
