"""What a process's start-up loaded, kept out of the garbage collector's walks."""

from __future__ import annotations

import gc

#: Whether `freeze_start_up` freezes. Off where one process starts server after server (the
#: tests, tests/conftest.py): there each start's full collection walked the whole test
#: process (a tenth of a second and more each time), and what each froze stayed for good.
FREEZE_AT_START = True


def freeze_start_up() -> None:
    """Once a process has started (the server's lifespan, the links' process): a full
    collection, then `gc.freeze()`. What is alive then lives as long as the process, and
    the collector no longer walks it on every full collection: those pauses were most of
    the API's p99 latency, and in the links' process up to 50 ms while a link's window
    waits for its answers to be read."""
    if FREEZE_AT_START:
        gc.collect()
        gc.freeze()
