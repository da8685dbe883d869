"""The SQLite store's writer process: it lives and dies with its store, a death of its own
refuses writes instead of hanging them, the signals meant for watui do not reach it, errors
come back as SQLite's own, and the WAL is checkpointed off the commit path."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sql_helpers import eventually, new_event

from watui.errors import StoreUnavailable
from watui.stores import sqlite_writer_process as program
from watui.stores.sqlite import Store
from watui.stores.sqlite_writer import _rebuilt


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_the_writer_is_a_process_of_its_own_that_ends_with_the_store(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "w.db")
    pid = store.writer.pid
    assert pid is not None and pid != os.getpid() and running(pid)
    await store.append([new_event("ses_1", 1)])
    await store.close()
    assert not running(pid)


async def test_a_killed_writer_refuses_writes_instead_of_hanging(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = await Store.open(tmp_path / "w.db")
    await store.append([new_event("ses_1", 1)])
    pid = store.writer.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    results = await asyncio.wait_for(
        asyncio.gather(*(store.append([new_event("ses_1", i)]) for i in range(2, 40)), return_exceptions=True), timeout=10
    )
    assert results and all(isinstance(r, StoreUnavailable) for r in results), results
    assert "may not have committed" in str(results[0]) and "exit code -9" in str(results[0])
    with pytest.raises(StoreUnavailable):  # and so is every write after them
        await asyncio.wait_for(store.append([new_event("ses_1", 99)]), timeout=10)
    assert "SQLite writer process ended" in caplog.text
    assert await store.count_events() == 1  # the reader still reads what was committed
    await asyncio.wait_for(store.close(), timeout=10)


async def test_the_signals_for_watui_do_not_stop_its_writer(tmp_path: Path) -> None:
    """A Ctrl-C, a hang-up or a service manager's SIGTERM is for watui, which flushes its
    writes and then closes the store: the writer must still be there to write them."""
    store = await Store.open(tmp_path / "w.db")
    pid = store.writer.pid
    assert pid is not None
    assert os.getpgid(pid) != os.getpgid(0)  # not in the terminal's foreground group
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        os.kill(pid, sig)
    await asyncio.sleep(0.2)
    events = await asyncio.gather(*(store.append([new_event("ses_1", i)]) for i in range(10)))
    assert [e.id for batch in events for e in batch] == list(range(1, 11))
    await store.close()


def test_the_writer_exits_when_the_process_that_opened_it_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import asyncio, sys, time
        from watui.stores.sqlite import Store
        async def main():
            store = await Store.open({str(tmp_path / "w.db")!r})
            print(store.writer.pid, flush=True)
            time.sleep(60)
        asyncio.run(main())
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert running(pid)
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while running(pid):
            assert time.monotonic() < deadline, "the writer outlived its store's process"
            time.sleep(0.02)
    finally:
        parent.kill()
        parent.wait(timeout=10)


async def test_a_value_that_cannot_reach_the_writer_fails_alone(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "w.db")
    bad = store.write(statements=[("SELECT ?", (lambda: 1,))])  # not picklable
    good = [store.append([new_event("ses_1", i)]) for i in range(5)]
    results = await asyncio.gather(bad, *good, return_exceptions=True)
    assert isinstance(results[0], Exception) and not isinstance(results[0], StoreUnavailable)
    assert [r[0].id for r in results[1:]] == [1, 2, 3, 4, 5]  # type: ignore[index]
    await store.close()


async def test_sqlite_errors_come_back_with_their_class_and_code(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "w.db")
    with pytest.raises(sqlite3.OperationalError, match="no such table") as missing:
        await store.writer.execute_fetchall("SELECT * FROM nope")
    assert missing.value.sqlite_errorname == "SQLITE_ERROR"
    insert = "INSERT INTO events(id, type, session_id, owner, ts, payload) VALUES (7, 'status', 's', 'o', 't', '{}')"
    await store.writer.execute_fetchall(insert)
    with pytest.raises(sqlite3.IntegrityError) as duplicate:
        await store.writer.execute_fetchall(insert)
    assert duplicate.value.sqlite_errorname == "SQLITE_CONSTRAINT_PRIMARYKEY"
    await store.close()


async def test_the_wal_is_checkpointed_in_the_background(tmp_path: Path) -> None:
    """SQLite's own threshold would leave these writes in the WAL until the store closes;
    the background checkpoint copies them into the database file while the store runs."""
    path = tmp_path / "w.db"
    store = await Store.open(path)
    before = path.stat().st_size
    await asyncio.gather(*(store.append([new_event("ses_1", i)]) for i in range(3000)))
    await eventually(lambda: path.stat().st_size > before + 200_000, timeout=10, what="a background checkpoint")
    await store.close()


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (("sqlite3", "OperationalError", "database or disk is full", 13, "SQLITE_FULL"), sqlite3.OperationalError),
        (("builtins", "OverflowError", "too big", None, None), OverflowError),
        (("builtins", "UnicodeDecodeError", "bad byte", None, None), RuntimeError),  # wants five arguments
        (("builtins", "print", "not an exception", None, None), RuntimeError),
        (("somewhere", "Else", "unknown", None, None), RuntimeError),
    ],
)
def test_errors_from_the_writer_are_rebuilt_as_this_process_can_raise_them(
    info: tuple[str, str, str, int | None, str | None], expected: type[Exception]
) -> None:
    exc = _rebuilt(info)
    assert type(exc) is expected and info[2] in str(exc)
    if info[3] is not None:
        assert (exc.sqlite_errorcode, exc.sqlite_errorname) == (info[3], info[4])  # type: ignore[attr-defined]


async def test_a_store_whose_writer_died_says_why_until_it_is_closed(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "w.db")
    assert store.broken is None
    pid = store.writer.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await eventually(lambda: store.broken is not None, timeout=10, what="the store to notice")
    assert "writer process ended (exit code -9)" in str(store.broken)
    await store.close()
    healthy = await Store.open(tmp_path / "w2.db")
    await healthy.close()
    assert healthy.broken is None  # a writer that exits because its store closed is no failure


def test_without_its_checkpointer_the_writer_lets_sqlite_checkpoint_again(tmp_path: Path) -> None:
    """The background checkpointer turned SQLite's own off; if that thread dies, the WAL must
    not grow for ever."""
    writer = program.Writer()
    writer.answer(("open", str(tmp_path / "w.db"), ["PRAGMA journal_mode=WAL"], 60.0))
    writer.answer(("transaction", False, [("CREATE TABLE t (x)", (), False)]))
    assert writer.conn is not None and writer.checkpointer is not None
    assert writer.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    writer.checkpointer.stop()  # as if it had died
    writer.answer(("transaction", False, [("INSERT INTO t VALUES (1)", (), False)]))
    assert writer.checkpointer is None
    assert writer.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    writer.close()
