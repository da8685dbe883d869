"""Message statistics at 1,000,000 messages (issue 21): ``message_stats`` on SQLite and
PostgreSQL, per session and over all sessions, beside the naive way in the same run.

    .venv/bin/python -m bench.bench_stats [--messages 1000000] [--sessions 100] [--repeat 5]

For each store: open it (its migrations make the ``messages_stats`` index), close it, load
``--messages`` messages straight into its table (SQLite ``executemany``, PostgreSQL ``COPY``;
then ``VACUUM ANALYZE`` on PostgreSQL, which autovacuum does by itself after such a load), open
it again and time:

- ``message_stats`` (30 days of ``by_day``) for one heavy session (a quarter of all messages),
  one typical session, the 50 sessions of one owner, and every session (an admin key);
- the naive baseline: ``SELECT`` every row of the same messages (every column, as a message
  list reads them) and count totals and days in Python.

Times are medians of ``--repeat`` runs (the naive ones: of 3 at most). Messages span 120 days
up to today, a tenth of the outgoing ones failed. PostgreSQL needs ``WATUI_BENCH_PG`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``), where the benchmark makes a database of
its own and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench._util import Figure, print_table
from watui.stores.base import StoreProtocol
from watui.stores.encoding import utc_text
from watui.stores.postgres import PostgresStore
from watui.stores.sqlite import Store

SERVER = os.environ.get("WATUI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DAYS = 30
COLUMNS = ("session_id", "direction", "chat", "text", "message_id", "status", "error", "ts")


def session_ids(sessions: int) -> list[str]:
    return [f"ses_{i:04d}" for i in range(sessions)]


def make_rows(count: int, sessions: int, now: datetime) -> list[tuple[Any, ...]]:
    """``count`` message rows (without ids): a quarter in ``ses_0000``, the rest spread over the
    other sessions; over 120 days up to ``now``."""
    rng = random.Random(21)
    ids = session_ids(sessions)
    span = 120 * 86400
    rows = []
    for n in range(count):
        session = ids[0] if n % 4 == 0 else ids[1 + n % (sessions - 1)]
        incoming = rng.random() < 0.5
        status = "received" if incoming else ("failed" if rng.random() < 0.1 else rng.choice(("sent", "delivered", "read")))
        at = now - timedelta(seconds=rng.randrange(span))
        rows.append((session, "in" if incoming else "out", f"1415555{n % 10000:04d}", f"message number {n}, say hello",
                     f"3EB0{n:016X}", status, "refused" if status == "failed" else None, at))
    return rows


def naive(rows: Sequence[Any], today: date, days: int, *, parse: Callable[[Any], datetime]) -> dict[str, Any]:
    """What the store's queries answer, counted in Python from every row (the baseline)."""
    since = today - timedelta(days=days - 1)
    totals: Counter[str] = Counter()
    by_day: dict[str, Counter[str]] = {}
    last: datetime | None = None
    for r in rows:
        direction, status, ts = r[2], r[6], parse(r[8])
        kind = "failed" if status == "failed" else ("received" if direction == "in" else "sent")
        totals[kind] += 1
        if last is None or ts > last:
            last = ts
        day = ts.astimezone(UTC).date()
        if day >= since and kind != "failed":
            by_day.setdefault(day.isoformat(), Counter())[kind] += 1
    return {"totals": totals, "by_day": by_day, "last": last}


async def timed(repeat: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


async def measure(store: StoreProtocol, label: str, sessions: int, repeat: int, total: int) -> list[Figure]:
    today = datetime.now(UTC).date()
    ids = session_ids(sessions)
    owner = ids[1:51]
    cases: list[tuple[str, list[str] | None]] = [
        ("heavy session", ids[:1]), ("typical session", ids[1:2]), ("one owner's 50 sessions", owner),
        ("all sessions", None),
    ]
    sql = store.dialect == "sqlite"
    cols = "id, session_id, direction, chat, text, message_id, status, error, ts"
    figures = []
    for name, chosen in cases:
        fast, stats = await timed(repeat, lambda c=chosen: store.message_stats(c, today=today, days=DAYS))
        if chosen is None:
            query, params = f"SELECT {cols} FROM messages", ()
        elif sql:
            marks = ",".join("?" * len(chosen))
            query, params = f"SELECT {cols} FROM messages WHERE session_id IN ({marks})", tuple(chosen)
        else:
            query, params = f"SELECT {cols} FROM messages WHERE session_id = ANY($1::text[])", (chosen,)

        async def slow(q: str = query, p: tuple[Any, ...] = params) -> dict[str, Any]:
            rows = await store.fetchall(q, p)
            return naive(rows, today, DAYS, parse=datetime.fromisoformat if sql else (lambda v: v))

        slow_time, counted = await timed(min(repeat, 3), slow)
        # The two ways agree (the benchmark would be meaningless otherwise).
        assert (stats.sent, stats.received, stats.failed) == (
            counted["totals"]["sent"], counted["totals"]["received"], counted["totals"]["failed"]), name
        assert stats.last_activity == counted["last"], name
        for day, c in counted["by_day"].items():
            assert (stats.by_day[day].sent, stats.by_day[day].received) == (c["sent"], c["received"]), (name, day)
        figures.append(Figure(
            f"{label}: {name}", fast * 1000, "ms", digits=1,
            note=f"{stats.total:,} of {total:,} messages; naive SELECT + count in Python "
                 f"{slow_time * 1000:,.1f} ms ({slow_time / fast:,.1f}x the time)"))
    return figures


async def bench_sqlite(rows: list[tuple[Any, ...]], sessions: int, repeat: int) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="watui-bench-stats-") as tmp:
        path = Path(tmp) / "watui.db"
        await (await Store.open(path, synchronous="NORMAL")).close()
        started = time.perf_counter()
        conn = sqlite3.connect(path)
        with conn:
            conn.executemany(
                f"INSERT INTO messages({', '.join(COLUMNS)}) VALUES (?,?,?,?,?,?,?,?)",
                ((*r[:7], utc_text(r[7])) for r in rows),
            )
        conn.close()
        load = time.perf_counter() - started
        store = await Store.open(path, synchronous="NORMAL")
        try:
            figures = await measure(store, "SQLite", sessions, repeat, len(rows))
        finally:
            await store.close()
        size = path.stat().st_size
    figures.insert(0, Figure(f"SQLite: load {len(rows):,} messages", load, "s",
                             note=f"executemany, one transaction; database {size / 2**20:,.0f} MiB"))
    return figures


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def bench_postgres(rows: list[tuple[Any, ...]], sessions: int, repeat: int) -> list[Figure]:
    name = "watui_bench_" + secrets.token_hex(6)
    await admin(f'CREATE DATABASE "{name}"')
    dsn = SERVER.rsplit("/", 1)[0] + "/" + name
    try:
        await (await PostgresStore.open(dsn)).close()
        started = time.perf_counter()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.copy_records_to_table("messages", records=rows, columns=list(COLUMNS))
            await conn.execute("VACUUM ANALYZE messages")
        finally:
            await conn.close()
        load = time.perf_counter() - started
        store = await PostgresStore.open(dsn)
        try:
            figures = await measure(store, "PostgreSQL", sessions, repeat, len(rows))
        finally:
            await store.close()
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    figures.insert(0, Figure(f"PostgreSQL: load {len(rows):,} messages", load, "s", note="COPY, then VACUUM ANALYZE"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = make_rows(args.messages, max(args.sessions, 52), datetime.now(UTC))
    figures = asyncio.run(bench_sqlite(rows, max(args.sessions, 52), args.repeat))
    try:
        asyncio.run(admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL is not reachable at {SERVER} ({exc}); set WATUI_BENCH_PG. Skipped it.")
    else:
        figures += asyncio.run(bench_postgres(rows, max(args.sessions, 52), args.repeat))
    print_table(f"Message statistics at {args.messages:,} messages: store queries vs SELECT-and-count", figures)


if __name__ == "__main__":
    main()
