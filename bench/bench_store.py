"""The SQLite store's event log: events/s through ``Store.append`` beside raw ``sqlite3``, in
the same run and at the same batch size (issue 9: the store must reach >= 70 % of raw).

    .venv/bin/python -m bench.bench_store [--events 200000] [--writers 1000] [--max-batch 64]
                                          [--synchronous FULL NORMAL] [--rounds 3] [--profile]

For each ``synchronous`` setting:

1. ``Store.append`` from ``--writers`` concurrent coroutines, one event per call, as sessions
   do; the store group-commits whatever queues up while a commit is in flight (up to
   ``--max-batch`` writes per transaction). The transactions run in the store's writer
   process: "CPU/wall" is watui's own process, "writer CPU/wall" the writer process's.
2. Raw ``sqlite3`` executemany of the same rows into the same schema with the same pragmas, in
   one transaction (what SQLite can do at best) and in transactions as big as the store's
   commits averaged in step 1 (the baseline the store is measured against: it separates
   SQLite's own cost per commit from the store's Python work). At that batch size twice:
   with the rows built before the clock starts (SQLite alone), and building each batch's
   rows from the events inside the timed loop (a plain program doing the store's job).

The machine's speed drifts from one second to the next (raw sqlite3 alone varied by a third
between rounds here), so each round runs the store and raw sqlite3 back to back, and the
last table gives the median share over ``--rounds`` rounds.

``--profile`` runs step 1 once more under cProfile and prints where the event loop spends its
time (the writer process's SQLite calls show up only as waiting).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._util import CpuShare, Figure, GcPauses, fs_type, load_average, print_table
from watui.machine import EventType
from watui.models import NewEvent
from watui.stores.sqlite import Store
from watui.stores.sqlite_schema import MIGRATIONS

GOAL_STORE_EPS = 20_000.0
GOAL_SHARE_OF_RAW = 0.70
"""The store's events/s as a share of raw sqlite3 at the same batch size (issue 9)."""


def sample_events(count: int) -> list[NewEvent]:
    """Realistic events: mostly status changes, some QR codes and messages, 10,000 sessions."""
    now = datetime.now(UTC)
    payloads: list[tuple[EventType, dict[str, Any]]] = [
        (EventType.STATUS, {"from": "initializing", "to": "qr_ready", "reason": None}),
        (EventType.QR, {"qr_text": "https://wa.me/settings/linked_devices#2@" + "A" * 60 + "," + "B" * 44 + ",1",
                        "generation": 1, "attempt": 1, "codes_per_attempt": 6,
                        "expires_at": "2026-01-01T12:01:00.000000+00:00"}),
        (EventType.STATUS, {"from": "qr_ready", "to": "connecting", "reason": None}),
        (EventType.CONNECTED, {"phone_number": "15550001234", "push_name": "Ana", "jid": "15550001234:3@s.whatsapp.net"}),
        (EventType.MESSAGE, {"direction": "in", "chat": "14155550123", "text": "hello from the phone",
                             "message_id": "3A0123456789ABCDEF01", "status": "received", "sender": "14155550123"}),
    ]
    sessions = [f"ses_{i:016x}" for i in range(10_000)]
    return [
        NewEvent(type=payloads[i % len(payloads)][0], session_id=sessions[i % len(sessions)], owner="local",
                 timestamp=now, payload=payloads[i % len(payloads)][1])
        for i in range(count)
    ]


@dataclass
class StoreResult:
    label: str
    synchronous: str
    events: int
    seconds: float
    commits: int
    cpu_share: float = 0.0
    writer_cpu_share: float = 0.0
    """The store's writer process: its CPU time over the wall time."""
    gc_full: float = 0.0
    raw: bool = False
    batch: int | None = None
    """Rows per transaction of a raw run; None = all rows in one transaction."""
    serialised: bool = False
    """A raw run that built its rows from the events inside the timed loop."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def events_per_commit(self) -> int:
        return max(1, round(self.events / max(self.commits, 1)))


async def bench_store(
    path: Path, events: Sequence[NewEvent], *, writers: int, synchronous: str, max_batch: int = 64,
    profile: cProfile.Profile | None = None,
) -> StoreResult:
    """``writers`` coroutines append one event per call, as sessions do; the store batches
    whatever queues up while a commit is in flight."""
    store = await Store.open(path, synchronous=synchronous, max_batch=max_batch)
    commits0 = store.commits
    shares = [events[k::writers] for k in range(writers)]

    async def writer(share: Sequence[NewEvent]) -> None:
        for event in share:
            await store.append([event])

    # The prebuilt input is the benchmark's, not the store's: keep it out of the collector so
    # full collections walk only what the store itself allocates.
    gc.collect()
    gc.freeze()
    try:
        with GcPauses() as pauses:
            cpu = CpuShare()
            writer_cpu0 = _cpu_seconds(store.writer.pid)
            if profile is not None:
                profile.enable()
            start = time.perf_counter()
            try:
                await asyncio.gather(*(writer(s) for s in shares))
            finally:
                seconds = time.perf_counter() - start
                if profile is not None:
                    profile.disable()
            share = cpu.ratio()
    finally:
        gc.unfreeze()
        writer_cpu = _cpu_seconds(store.writer.pid) - writer_cpu0
        commits = store.commits - commits0
        count = await store.count_events()
        await store.close()
    if count != len(events):
        raise RuntimeError(f"store holds {count} events, expected {len(events)}")
    return StoreResult(f"Store.append, synchronous={synchronous}", synchronous, len(events), seconds,
                       commits, share, writer_cpu / seconds, sum(pauses.full))


def _cpu_seconds(pid: int | None) -> float:
    """User and system CPU seconds of process ``pid`` so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _row(i: int, e: NewEvent) -> tuple[Any, ...]:
    return (i, e.type.value, e.session_id, e.owner, e.timestamp.astimezone(UTC).isoformat(timespec="microseconds"),
            json.dumps(e.payload, separators=(",", ":"), default=str))


def bench_raw_sqlite(
    path: Path, events: Sequence[NewEvent], *, synchronous: str, batch: int | None = None, serialise: bool = False,
) -> StoreResult:
    """The same rows, schema and pragmas through plain ``sqlite3``: one executemany in one
    transaction, or (``batch``) one transaction per ``batch`` rows like the store's commits.

    The rows are built before the clock starts, unless ``serialise``: then each batch's rows
    are built from the events inside the timed loop (JSON payload, ISO timestamp), as any
    program that writes these events must."""
    step = batch or len(events)
    numbered = list(enumerate(events, start=1))
    prebuilt = None if serialise else [_row(i, e) for i, e in numbered]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.executescript("BEGIN;" + MIGRATIONS[0] + "COMMIT;")
    sql = "INSERT INTO events(id, type, session_id, owner, ts, payload) VALUES (?,?,?,?,?,?)"
    cpu = CpuShare()
    start = time.perf_counter()
    for first in range(0, len(events), step):
        if prebuilt is not None:
            rows = prebuilt[first : first + step]
        else:
            rows = [_row(i, e) for i, e in numbered[first : first + step]]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - start
    share = cpu.ratio()
    conn.close()
    commits = -(-len(events) // step)
    how = "one transaction" if batch is None else f"{step} rows/commit"
    label = f"raw sqlite3 executemany, {how}{', serialising each batch' if serialise else ''}, synchronous={synchronous}"
    return StoreResult(label, synchronous, len(events), seconds, commits, share, raw=True, batch=batch,
                       serialised=serialise)


async def run_store_benchmarks(
    root: Path, events: Sequence[NewEvent], *, writers: int, synchronous: Sequence[str] = ("FULL", "NORMAL"),
    max_batch: int = 64, tag: str = "",
) -> list[StoreResult]:
    """For each ``synchronous``: the store, then raw sqlite3 in one transaction and at the
    store's own batch size, one right after the other so they see the same machine.

    Each database is deleted once measured: its dirty pages would otherwise be written back
    while the next runs sync theirs (hundreds of megabytes over a few rounds)."""
    results: list[StoreResult] = []
    for sync in synchronous:
        path = root / f"store-{sync}{tag}.db"
        ours = await bench_store(path, events, writers=writers, synchronous=sync, max_batch=max_batch)
        _remove_database(path)
        results.append(ours)
        for name, batch, serialise in (("raw", None, False), ("rawb", ours.events_per_commit, False),
                                       ("raws", ours.events_per_commit, True)):
            path = root / f"{name}-{sync}{tag}.db"
            results.append(bench_raw_sqlite(path, events, synchronous=sync, batch=batch, serialise=serialise))
            _remove_database(path)
    return results


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def store_figures(results: Sequence[StoreResult]) -> list[Figure]:
    """One line per run; each store line is followed by its share of raw sqlite3 at the same
    batch size (the raw run that follows it with ``batch`` equal to its events/commit)."""
    figs: list[Figure] = []
    for k, r in enumerate(results):
        if r.raw:
            one_tx = next((x for x in results if x.raw and x.batch is None and x.synchronous == r.synchronous), r)
            figs.append(Figure("  " + r.label, r.rate, "events/s", digits=0,
                               note=f"{r.events:,} rows in {r.seconds:.2f} s, {r.commits:,} commits"
                                    + ("" if one_tx is r else f", {r.rate / one_tx.rate:.0%} of one transaction")))
            continue
        figs.append(Figure(r.label, r.rate, "events/s", GOAL_STORE_EPS, ">=", digits=0,
                           note=f"{r.events:,} in {r.seconds:.2f} s, {r.commits:,} commits "
                                f"({r.events_per_commit} events/commit), CPU/wall "
                                f"{r.cpu_share:.2f}, writer CPU/wall {r.writer_cpu_share:.2f}, "
                                f"full GC {r.gc_full:.2f} s"))
        for serialised in (False, True):
            same = next((x for x in results[k + 1:] if x.raw and x.synchronous == r.synchronous
                         and x.batch == r.events_per_commit and x.serialised == serialised), None)
            if same is None:
                continue
            what = "serialising too" if serialised else "rows built beforehand"
            figs.append(Figure(f"  Store / raw sqlite3 at {same.batch} rows/commit ({what}), synchronous={r.synchronous}",
                               100 * r.rate / same.rate, "%", 100 * GOAL_SHARE_OF_RAW, ">=", digits=0,
                               note=f"{r.rate:,.0f} vs {same.rate:,.0f} events/s, same run"))
    return figs


def median_figures(rounds: Sequence[Sequence[StoreResult]]) -> list[Figure]:
    """Per ``synchronous`` setting: the store's events/s and its share of raw sqlite3 (rows built
    beforehand, at the store's batch size), each the median over the rounds."""
    figs: list[Figure] = []
    for sync in dict.fromkeys(r.synchronous for results in rounds for r in results):
        shares, rates = [], []
        for results in rounds:
            ours = next(r for r in results if not r.raw and r.synchronous == sync)
            raw = next((r for r in results if r.raw and r.synchronous == sync and not r.serialised
                        and r.batch == ours.events_per_commit), None)
            rates.append(ours.rate)
            if raw is not None:
                shares.append(100 * ours.rate / raw.rate)
        figs.append(Figure(f"Store.append, synchronous={sync}", statistics.median(rates), "events/s",
                           GOAL_STORE_EPS, ">=", digits=0, note="rounds: " + ", ".join(f"{x:,.0f}" for x in rates)))
        if shares:
            figs.append(Figure(f"  Store / raw sqlite3 (rows built beforehand), synchronous={sync}",
                               statistics.median(shares), "%", 100 * GOAL_SHARE_OF_RAW, ">=", digits=0,
                               note="rounds: " + ", ".join(f"{x:.0f} %" for x in shares)))
    return figs


async def _run(args: argparse.Namespace) -> None:
    events = sample_events(args.events)
    with tempfile.TemporaryDirectory(prefix="watui-bench-store-") as tmp:
        root = Path(tmp)
        print(f"watui store benchmark: {args.events:,} events from {args.writers:,} writers, "
              f"max batch {args.max_batch}, Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
              f"{os.cpu_count()} CPUs (load avg {load_average()}), data in {root} ({fs_type(root)})")
        rounds: list[list[StoreResult]] = []
        for round_ in range(1, args.rounds + 1):
            results = await run_store_benchmarks(root, events, writers=args.writers, synchronous=args.synchronous,
                                                 max_batch=args.max_batch, tag=f"-{round_}")
            rounds.append(results)
            title = "Store: event log writes (group commit) vs raw sqlite3"
            print_table(title if args.rounds == 1 else f"{title}, round {round_}", store_figures(results))
        if args.rounds > 1:
            print_table(f"Store / raw sqlite3, median of {args.rounds} rounds", median_figures(rounds))
        if args.profile:
            profile = cProfile.Profile()
            await bench_store(root / "store-profiled.db", events, writers=args.writers,
                              synchronous=args.synchronous[0], max_batch=args.max_batch, profile=profile)
            print(f"\ncProfile of Store.append, synchronous={args.synchronous[0]} (event loop thread only):")
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_store", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to write (default 200000)")
    parser.add_argument("--writers", type=int, default=1_000, help="concurrent appending coroutines (default 1000)")
    parser.add_argument("--max-batch", type=int, default=64, help="the store's commit_max_batch (default 64)")
    parser.add_argument("--synchronous", nargs="+", default=["FULL", "NORMAL"], choices=["FULL", "NORMAL", "OFF"])
    parser.add_argument("--rounds", type=int, default=3, help="repeat the comparison (default 3)")
    parser.add_argument("--profile", action="store_true", help="then profile the store's run under cProfile")
    args = parser.parse_args(argv)
    if args.events < 1 or args.writers < 1 or args.max_batch < 1 or args.rounds < 1:
        parser.error("--events, --writers, --max-batch and --rounds must be at least 1")
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
