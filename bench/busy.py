"""`python -m bench.busy SHARE [--seconds S]`: a busy neighbour for the benchmarks. It keeps
SHARE (0-1) of one core busy, spinning SHARE of every 10 ms and sleeping the rest, until
stopped (or for S seconds): a run beside it shows how a benchmark fares when the machine
is not its own (docs/performance.md, bench/smpp: "beside a load")."""

from __future__ import annotations

import argparse
import time

PERIOD = 0.010


def spin(share: float, seconds: float | None) -> None:
    end = None if seconds is None else time.monotonic() + seconds
    while end is None or time.monotonic() < end:
        began = time.perf_counter()
        while time.perf_counter() - began < share * PERIOD:
            pass
        time.sleep(PERIOD * (1 - share))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.busy", description=__doc__)
    parser.add_argument("share", type=float, help="of one core, 0-1 (0.7: 7 ms of every 10)")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: never)")
    args = parser.parse_args()
    if not 0 <= args.share <= 1:
        parser.error("the share is between 0 and 1")
    spin(args.share, args.seconds)


if __name__ == "__main__":
    main()
