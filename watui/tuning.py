"""Process-wide tuning for a process that holds thousands of sessions."""

from __future__ import annotations

import gc
import sys

GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc(*, freeze: bool = True) -> None:
    """Keep CPython's cyclic collector from stalling the event loop.

    Thousands of long-lived session snapshots make every full collection walk the whole heap
    (hundreds of milliseconds at 10,000 sessions) to free almost nothing. Freezing what exists
    after start-up takes it out of the collector's view, and a higher first threshold makes
    collections rarer. Measured by ``bench/bench_engine.py``: loop-lag p99 under steady
    traffic went from 31.8 ms to 3.5 ms.
    """
    gc.set_threshold(*GC_THRESHOLDS)
    if freeze:
        gc.collect()
        gc.freeze()


SWITCH_INTERVAL = 0.0002
"""Seconds a thread may hold the GIL while another waits for it (CPython's default: 0.005)."""


def tune_threads() -> None:
    """Let the store's writer thread have the GIL back within 0.2 ms, not 5 ms.

    The event loop is busy in Python while the writer thread runs SQLite, which releases the
    GIL while it writes. Between two transactions the thread needs the GIL for a few
    microseconds, and with the default interval it waited up to 5 ms for the loop to let go:
    the thread sat idle while the loop was busy, and the other way round. Measured by
    ``bench/bench_store.py`` (100,000 events from 1,000 writers, 64 per commit,
    synchronous=FULL): about 55,000 events/s at 5 ms, about 70,000 at 0.2 ms. The other
    threads (the store's reader, the console's input) spend their time in C or waiting, so
    shorter slices cost them nothing.
    """
    sys.setswitchinterval(SWITCH_INTERVAL)
