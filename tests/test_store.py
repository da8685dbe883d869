"""The store: schema versions, the event log's ids, group commits, crash safety, API keys."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from watui.machine import EventType
from watui.models import NewEvent, Session
from watui.stores.base import hash_key
from watui.stores.sqlite import Store
from watui.stores.sqlite_schema import MIGRATIONS, SCHEMA_VERSION


def event(i: int, session: str = "ses_a", owner: str = "alice") -> NewEvent:
    return NewEvent(type=EventType.STATUS, session_id=session, owner=owner, payload={"i": i})


async def test_schema_is_versioned_and_migrations_run_once(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    store = await Store.open(path)
    await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    # Opening again must not re-run a migration (it would fail on CREATE TABLE).
    store = await Store.open(path)
    await store.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        await Store.open(path)


async def test_event_ids_increase_and_are_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    store = await Store.open(path)
    first = await store.append([event(i) for i in range(5)])
    assert [e.id for e in first] == [1, 2, 3, 4, 5]
    await store.close()
    # Even if rows vanish (they never should), AUTOINCREMENT keeps ids from coming back.
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM events WHERE id > 3")
    conn.commit()
    conn.close()
    store = await Store.open(path)
    again = await store.append([event(9)])
    assert again[0].id == 6
    read = await store.read_events(after_id=0)
    assert [e.id for e in read] == [1, 2, 3, 6]
    await store.close()


async def test_concurrent_writes_are_group_committed(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "w.db", synchronous="FULL")
    before = store.commits
    results = await asyncio.gather(*(store.append([event(i)]) for i in range(1000)))
    ids = [r[0].id for r in results]
    assert sorted(ids) == list(range(1, 1001))
    # A thousand writers, a handful of transactions.
    assert store.commits - before < 50
    assert await store.count_events() == 1000
    await store.close()


async def test_write_is_atomic_with_session_snapshot(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "w.db")
    now = datetime.now(UTC)
    session = Session(id="ses_a", name="a", owner="alice", created_at=now, updated_at=now)
    await store.write(events=[event(1)], sessions=[session])
    assert [s.id for s in await store.load_sessions()] == ["ses_a"]
    # A failing statement rolls back the events and the session written with it.
    with pytest.raises(sqlite3.OperationalError):
        await store.write(events=[event(2)], sessions=[session.model_copy(update={"name": "b"})],
                          statements=[("INSERT INTO nope VALUES (1)", ())])
    assert (await store.load_sessions())[0].name == "a"
    assert await store.count_events() == 1
    # The store goes on working, and the failed write's id is not skipped or reused oddly.
    ok = await store.append([event(3)])
    assert ok[0].id == 2
    await store.close()


async def test_a_bad_write_does_not_fail_its_batch_neighbours(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "w.db")
    good = [store.append([event(i)]) for i in range(20)]
    bad = store.write(events=[event(99)], statements=[("INSERT INTO nope VALUES (1)", ())])
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert all(not isinstance(r, Exception) for r in results[:20])
    assert isinstance(results[20], sqlite3.OperationalError)
    assert await store.count_events() == 20
    await store.close()


async def test_bad_writes_among_overlapping_batches_leave_ids_gapless_and_in_commit_order(
    tmp_path: Path,
) -> None:
    """Many small batches, some with a bad write: the bad writes fail alone, the log has no
    gap, ids and on_commit follow commit order, each write's ids are its rows', and the
    session's snapshot is the last good write's. (A store that assembles a batch while the one
    before commits, giving it ids that follow, must assemble it again when that one fails.)"""
    store = await Store.open(tmp_path / "w.db", max_batch=4)
    seen: list[int] = []
    store.on_commit.append(lambda events: seen.extend(e.id for e in events))
    now = datetime.now(UTC)
    bad_ones = {5, 6, 13, 22, 23, 24, 31}

    def write(i: int) -> Any:
        session = Session(id="ses_a", name=f"v{i}", owner="alice", created_at=now, updated_at=now)
        statements = [("INSERT INTO nope VALUES (1)", ())] if i in bad_ones else []
        return store.write(events=[event(i), event(i)], sessions=[session], statements=statements)

    results = await asyncio.gather(*(write(i) for i in range(40)), return_exceptions=True)
    good = [i for i in range(40) if i not in bad_ones]
    assert all(isinstance(results[i], sqlite3.OperationalError) for i in bad_ones)
    assert store.commits > 10
    rows = [(r[0], r[1]) for r in await store.fetchall("SELECT id, payload FROM events ORDER BY id")]
    assert [r[0] for r in rows] == list(range(1, 2 * len(good) + 1))
    assert seen == [r[0] for r in rows]
    # Each write got the ids its rows have, and writes committed in the order they were queued.
    ids = [e.id for i in good for e in results[i].events]  # type: ignore[union-attr]
    assert ids == [r[0] for r in rows]
    assert [r[1] for r in rows] == [f'{{"i":{i}}}' for i in good for _ in range(2)]
    assert (await store.load_sessions())[0].name == f"v{good[-1]}"
    assert (await store.append([event(99)]))[0].id == 2 * len(good) + 1
    await store.close()


async def test_close_flushes_queued_writes(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    store = await Store.open(path)
    pending = [asyncio.ensure_future(store.append([event(i)])) for i in range(200)]
    await asyncio.sleep(0)
    await store.close()
    await asyncio.gather(*pending)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 200
    conn.close()


async def test_api_keys_are_stored_hashed(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    store = await Store.open(path)
    key, secret = await store.create_api_key("alice")
    admin, _ = await store.create_api_key("root", admin=True)
    assert key.role == "user" and admin.role == "admin"
    assert (await store.find_api_key(secret)) == key
    assert await store.find_api_key(secret + "x") is None
    conn = sqlite3.connect(path)
    stored = [row[0] for row in conn.execute("SELECT key_hash FROM api_keys")]
    conn.close()
    assert secret not in stored and hash_key(secret) in stored
    assert await store.revoke_api_key(key.id) is True
    assert await store.revoke_api_key(key.id) is False
    assert await store.find_api_key(secret) is None
    assert await store.count_api_keys() == 1
    await store.close()


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from watui.machine import EventType
    from watui.models import NewEvent
    from watui.stores.sqlite import Store

    async def main(path):
        store = await Store.open(path, synchronous="FULL")
        async def burst(k):
            n = 0
            while True:
                events = await store.append(
                    [NewEvent(type=EventType.MESSAGE, session_id=f"s{k}", owner="o", payload={"n": n})]
                )
                n += 1
                # Reported as published: from here on it must survive anything.
                sys.stdout.write(f"{events[0].id}\\n")
                sys.stdout.flush()
        await asyncio.gather(*(burst(k) for k in range(8)))

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.slow
def test_kill_9_mid_burst_loses_no_reported_event(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        reported: list[int] = []
        for line in proc.stdout:
            reported.append(int(line))
            if len(reported) >= 2000 + round_ * 777:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # Whatever the pipe still held was reported too.
        reported.extend(int(x) for x in proc.stdout.read().split())

        async def check(reported: list[int] = reported) -> None:
            store = await Store.open(path)  # opens cleanly after the crash
            ids = {e.id for e in await store.read_events(after_id=0, limit=10**7)}
            assert set(reported) <= ids, f"lost {len(set(reported) - ids)} reported events"
            # The log has no holes: ids are contiguous from 1.
            assert ids == set(range(1, max(ids) + 1))
            conn = sqlite3.connect(path)
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            conn.close()
            await store.close()

        asyncio.run(check())
