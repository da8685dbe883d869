"""The pieces that make the SQLite store's writes cheap, each held to what it replaced: an
Event built without validating again, timestamps and payload JSON written faster with the
same text as before, events written as multi-row INSERTs that reach the writer process
intact, and transactions handed over two deep."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import math
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from watui.errors import StoreUnavailable
from watui.machine import EventType
from watui.models import Event, NewEvent
from watui.stores.encoding import payload_json, utc_text
from watui.stores.sqlite import Store
from watui.stores.sqlite_writer import MAX_ROWS_PER_INSERT, TransactionRows, request_frame
from watui.stores.sqlite_writer_process import read_message, run_transaction


def new_event(i: int, **payload: Any) -> NewEvent:
    return NewEvent(type=EventType.MESSAGE, session_id=f"ses_{i % 3}", owner="alice", payload={"i": i, **payload})


def test_event_committed_is_the_validated_event() -> None:
    new = new_event(7, text="héllo", nested={"a": [1, 2]})
    fast = Event.committed(new, 42)
    slow = Event(id=42, **dict(new))
    assert fast == slow
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_fields_set == slow.model_fields_set
    assert list(fast.__dict__) == list(slow.__dict__)  # the same field order in dumps
    with pytest.raises(ValueError):  # still frozen
        fast.id = 1  # type: ignore[misc]
    assert fast.model_copy(update={"id": 43}).id == 43 and fast.id == 42


def test_event_and_new_event_keep_the_same_fields() -> None:
    """Event.committed copies NewEvent's fields by name: a field added to one only would be
    lost or left unset."""
    assert set(Event.model_fields) == set(NewEvent.model_fields) | {"id"}
    for name, field in NewEvent.model_fields.items():
        assert Event.model_fields[name].annotation == field.annotation, name


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [
        {"text": "hello", "n": 1, "f": 1.5, "ok": True, "none": None, "list": [1, "a", {"b": []}]},
        {"unicode": "ünïcødé ✓ 🎉", "nul": "a\x00b", "control": "\x1b[31m"},
        {"big": 2**70},  # past 64 bits: orjson refuses, the standard library writes it
        {"surrogate": "\ud800"},  # a lone surrogate: likewise
        {1: "int key"},  # not a string key: likewise
        {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "point": Point(3)},  # str(value), as before
    ],
)
def test_payload_json_reads_back_as_the_standard_library_wrote_it(value: dict[Any, Any]) -> None:
    stdlib = json.dumps(value, separators=(",", ":"), default=str)
    assert json.loads(payload_json(value)) == json.loads(stdlib)


def test_payload_json_writes_nan_as_null() -> None:
    assert json.loads(payload_json({"x": math.nan, "y": math.inf})) == {"x": None, "y": None}


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC),  # the same second: its text is reused
        datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),  # the next second, no microseconds
        datetime(2026, 1, 2, 3, 4, 6, 999_999, tzinfo=timezone(timedelta(hours=-5))),  # another zone: in UTC
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ],
)
def test_utc_text_is_isoformat_in_utc_with_microseconds(value: datetime) -> None:
    text = utc_text(value)
    assert text == value.astimezone(UTC).isoformat(timespec="microseconds")
    assert datetime.fromisoformat(text) == value


def test_utc_text_of_one_second_then_another_and_back() -> None:
    a = datetime(2026, 5, 6, 7, 8, 9, 10, tzinfo=UTC)
    b = a + timedelta(seconds=1)
    assert [utc_text(x) for x in (a, b, a, a + timedelta(days=1))] == [
        "2026-05-06T07:08:09.000010+00:00", "2026-05-06T07:08:10.000010+00:00",
        "2026-05-06T07:08:09.000010+00:00", "2026-05-07T07:08:09.000010+00:00",
    ]


def events_table() -> sqlite3.Connection:
    """An in-memory database with the columns TransactionRows writes events into."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, type TEXT, session_id TEXT, owner TEXT,"
                 " ts TEXT, payload TEXT)")
    return conn


def write(conn: sqlite3.Connection, rows: TransactionRows) -> None:
    """As the store does: the steps go through the pipe to the writer process, which runs them."""
    request = read_message(io.BytesIO(request_frame(("transaction", False, rows.steps()))))
    run_transaction(conn, request[2])


@pytest.mark.parametrize("count", [0, 1, 2, 3, 63, 64, 65, MAX_ROWS_PER_INSERT, MAX_ROWS_PER_INSERT + 1, 300])
def test_transaction_rows_write_every_event_in_order(count: int) -> None:
    conn = events_table()
    rows = TransactionRows()
    for i in range(1, count + 1):
        rows.events += (i, EventType.STATUS, f"ses_{i}", "alice", f"ts{i}", f'{{"i":{i}}}')
    write(conn, rows)
    stored = conn.execute("SELECT id, type, typeof(type), session_id, payload FROM events ORDER BY id").fetchall()
    assert stored == [(i, "status", "text", f"ses_{i}", f'{{"i":{i}}}') for i in range(1, count + 1)]


def test_a_transaction_of_many_statements_is_all_or_nothing() -> None:
    conn = events_table()
    rows = TransactionRows()
    for i in range(1, 200):
        rows.events += (i, "status", "s", "o", "t", "{}")
    rows.statements.append(("INSERT INTO nope VALUES (1)", ()))
    with pytest.raises(sqlite3.OperationalError):
        write(conn, rows)
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0
    assert not conn.in_transaction


async def test_stored_events_read_back_as_appended(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "w.db", max_batch=8)
    news = [new_event(i, text=f"m{i}", big=2**70 if i == 5 else i) for i in range(50)]
    written = [e for batch in await asyncio.gather(*(store.append([n]) for n in news)) for e in batch]
    read = await store.read_events(after_id=0, limit=100)
    assert [e.id for e in written] == list(range(1, 51))
    assert read == written
    assert [e.payload for e in read] == [n.payload for n in news]
    assert [e.timestamp for e in read] == [n.timestamp for n in news]
    await store.close()


async def test_a_writer_that_dies_refuses_writes_instead_of_hanging(tmp_path: Path) -> None:
    """A bug in the write loop must not leave callers waiting for ever: what it held and
    what is queued fail with StoreUnavailable, and later writes are refused."""
    threads = set(threading.enumerate())
    store = await Store.open(tmp_path / "w.db")
    await store.append([new_event(1)])

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    store._assemble = broken  # type: ignore[method-assign]
    store._commit = broken  # type: ignore[method-assign]
    results = await asyncio.wait_for(
        asyncio.gather(*(store.append([new_event(i)]) for i in range(5)), return_exceptions=True), timeout=5
    )
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(store.append([new_event(9)]), timeout=5)
    assert await store.count_events() == 1
    await store.close()  # still closes both connections: a thread left running keeps the process alive
    await asyncio.sleep(0.1)
    assert {t for t in threading.enumerate() if t.is_alive()} <= threads
