"""The PostgreSQL store's event log (issue 9): events/s beside raw asyncpg, in the same run.

    .venv/bin/python -m bench.bench_pg_store [--events 20000] [--writers 64] [--nodes 3]

Needs a PostgreSQL server (``WATUI_BENCH_PG``, default ``postgresql://postgres@127.0.0.1:5432/
postgres``) where it may create a database; it makes a fresh one and drops it at the end.

1. ``PostgresStore.append``: ``--writers`` coroutines append one event per call, as sessions
   do; the store group-commits whatever queues up while a commit is in flight, and each commit
   takes its ids from the ``event_seq`` counter (the commit-ordered log).
2. Raw asyncpg ``executemany`` of the same rows into the same table, one transaction per batch
   of the size the store's commits averaged in step 1: the baseline (what the driver and the
   server can do with no store around them).
3. ``--nodes`` stores (separate pools, as separate nodes would be) appending at once: their
   event-writing transactions queue on the counter's row lock, so this shows what ordering the
   log by commit costs a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from bench._util import CpuShare, Figure, print_table
from watui.machine import EventType
from watui.models import NewEvent
from watui.stores.postgres import PostgresStore
from watui.stores.postgres_schema import MIGRATIONS

SERVER = os.environ.get("WATUI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass
class Result:
    label: str
    events: int
    seconds: float
    commits: int
    cpu_share: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def make_events(count: int, sessions: int = 200) -> list[NewEvent]:
    return [
        NewEvent(type=EventType.STATUS, session_id=f"ses_{i % sessions:04d}", owner=f"owner_{i % 7}",
                 payload={"status": "connected", "reason": None, "n": i})
        for i in range(count)
    ]


async def bench_store(dsn: str, schema: str, events: Sequence[NewEvent], *, writers: int, nodes: int,
                      hook: bool = False) -> Result:
    stores = [await PostgresStore.open(dsn, schema=schema) for _ in range(nodes)]
    if hook:  # as the webhook dispatcher does: the batch then needs a transaction block
        for store in stores:
            store.event_hooks.append(lambda event: [])
    shares = [events[k::writers] for k in range(writers)]

    async def writer(store: PostgresStore, share: Sequence[NewEvent]) -> None:
        for event in share:
            await store.append([event])

    cpu = CpuShare()
    start = time.perf_counter()
    await asyncio.gather(*(writer(stores[k % nodes], s) for k, s in enumerate(shares)))
    seconds = time.perf_counter() - start
    share = cpu.ratio()
    commits = sum(s.commits for s in stores)
    count = await stores[0].count_events()
    for store in stores:
        await store.close()
    if count != len(events):
        raise RuntimeError(f"store holds {count} events, expected {len(events)}")
    label = "PostgresStore.append" + (f", {nodes} nodes (pools) at once" if nodes > 1 else ", one node")
    label += ", with an event hook" if hook else ""
    return Result(label, len(events), seconds, commits, share)


async def bench_raw(dsn: str, schema: str, events: Sequence[NewEvent], *, batch: int) -> Result:
    """The same rows and table through plain asyncpg: ``executemany`` of ``batch`` rows per
    transaction, rows built beforehand (the store builds its own inside the timing)."""
    rows = [(i, e.type.value, e.session_id, e.owner, e.timestamp,
             json.dumps(e.payload, separators=(",", ":"), default=str))
            for i, e in enumerate(events, start=1)]
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(MIGRATIONS[0])
        sql = "INSERT INTO events(id, type, session_id, owner, ts, payload) VALUES ($1,$2,$3,$4,$5,$6)"
        cpu = CpuShare()
        start = time.perf_counter()
        for first in range(0, len(rows), batch):
            async with conn.transaction():
                await conn.executemany(sql, rows[first : first + batch])
        seconds = time.perf_counter() - start
        share = cpu.ratio()
    finally:
        await conn.close()
    commits = -(-len(rows) // batch)
    return Result(f"raw asyncpg executemany, {batch} rows/commit", len(rows), seconds, commits, share)


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> list[Figure]:
    name = "watui_bench_" + secrets.token_hex(6)
    await admin(f'CREATE DATABASE "{name}"')
    dsn = SERVER.rsplit("/", 1)[0] + "/" + name
    try:
        events = make_events(args.events)
        one = await bench_store(dsn, "one_node", events, writers=args.writers, nodes=1)
        batch = max(1, round(one.events / one.commits))
        raw = await bench_raw(dsn, "raw", events, batch=batch)
        hooked = await bench_store(dsn, "hooked", events, writers=args.writers, nodes=1, hook=True)
        many = await bench_store(dsn, "many_nodes", events, writers=args.writers, nodes=args.nodes)
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    figures = [Figure("  " + raw.label, raw.rate, "events/s", digits=0,
                      note=f"{raw.events:,} rows in {raw.seconds:.2f} s, {raw.commits:,} commits (baseline)")]
    for r in (one, hooked, many):
        figures.append(Figure(
            r.label, r.rate, "events/s", digits=0,
            note=f"{r.rate / raw.rate:.0%} of raw; {r.events:,} in {r.seconds:.2f} s, {r.commits:,} commits "
                 f"({r.events / max(r.commits, 1):.0f} events/commit), CPU/wall {r.cpu_share:.2f}"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--writers", type=int, default=64)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    try:
        asyncio.run(admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL is not reachable at {SERVER} ({exc}); set WATUI_BENCH_PG. Skipped.")
        return
    figures = asyncio.run(run(args))
    print_table("PostgreSQL store: event log writes (commit-ordered ids) vs raw asyncpg", figures)


if __name__ == "__main__":
    main()
