"""Message statistics (``StoreProtocol.message_stats``): one scenario, the same answers from
SQLite and PostgreSQL, computed by indexed SQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from watui.models import MessageDirection, MessageStatus, NewMessage
from watui.stores.base import StoreProtocol

TODAY = date(2026, 3, 10)
MIDNIGHT = datetime(2026, 3, 10, tzinfo=UTC)
IN, OUT = MessageDirection.IN, MessageDirection.OUT
S = MessageStatus


def message(session: str, direction: MessageDirection, status: MessageStatus, at: datetime, n: int) -> NewMessage:
    return NewMessage(session, direction, "15550001111@s.whatsapp.net", f"hi {n}", f"m{n}", status, timestamp=at)


SCENARIO = [
    # ses_a: today, yesterday (one second before midnight UTC), 3 days ago, 40 days ago
    ("ses_a", IN, S.RECEIVED, MIDNIGHT + timedelta(hours=9)),
    ("ses_a", IN, S.RECEIVED, MIDNIGHT + timedelta(hours=10)),
    ("ses_a", OUT, S.SENT, MIDNIGHT + timedelta(hours=11)),
    ("ses_a", OUT, S.READ, MIDNIGHT - timedelta(seconds=1)),
    ("ses_a", OUT, S.FAILED, MIDNIGHT - timedelta(hours=2)),
    ("ses_a", OUT, S.DELIVERED, MIDNIGHT - timedelta(days=3)),
    ("ses_a", IN, S.RECEIVED, MIDNIGHT - timedelta(days=40)),
    # ses_b: one of each, today and the day before yesterday
    ("ses_b", IN, S.RECEIVED, MIDNIGHT + timedelta(minutes=1)),
    ("ses_b", OUT, S.PENDING, MIDNIGHT - timedelta(days=2) + timedelta(hours=23, minutes=59)),
    # ses_c: nothing recent
    ("ses_c", OUT, S.SENT, MIDNIGHT - timedelta(days=100)),
]


async def seed(store: StoreProtocol) -> None:
    await store.write(messages=[message(s, d, st, at, n) for n, (s, d, st, at) in enumerate(SCENARIO)])


def days(stats: object) -> dict[str, tuple[int, int]]:
    by_day = stats.by_day  # type: ignore[attr-defined]
    return {day: (c.sent, c.received) for day, c in by_day.items() if c.sent or c.received}


async def test_one_session(store: StoreProtocol) -> None:
    await seed(store)
    stats = await store.message_stats(["ses_a"], today=TODAY, days=7)
    assert (stats.total, stats.sent, stats.received, stats.failed) == (7, 3, 3, 1)
    assert stats.by_type == {"text": 7}
    assert list(stats.by_day) == [(TODAY - timedelta(days=n)).isoformat() for n in range(6, -1, -1)]
    assert days(stats) == {"2026-03-10": (1, 2), "2026-03-09": (1, 0), "2026-03-07": (1, 0)}
    assert stats.last_activity == MIDNIGHT + timedelta(hours=11)
    one_day = await store.message_stats(["ses_a"], today=TODAY, days=1)
    assert list(one_day.by_day) == ["2026-03-10"] and one_day.total == 7


async def test_several_sessions_and_all(store: StoreProtocol) -> None:
    await seed(store)
    ab = await store.message_stats(["ses_a", "ses_b"], today=TODAY, days=30)
    # ses_b's pending send (still in its pacing queue) is counted apart, not as sent, nor on its day.
    assert (ab.total, ab.sent, ab.received, ab.failed, ab.pending) == (9, 3, 4, 1, 1)
    assert days(ab) == {"2026-03-10": (1, 3), "2026-03-09": (1, 0), "2026-03-07": (1, 0)}
    everything = await store.message_stats(None, today=TODAY, days=366)
    assert (everything.total, everything.sent, everything.received, everything.failed, everything.pending) == (
        10, 4, 4, 1, 1)
    assert days(everything)["2026-01-29"] == (0, 1) and days(everything)["2025-11-30"] == (1, 0)
    assert len(everything.by_day) == 366


async def test_no_messages(store: StoreProtocol) -> None:
    await seed(store)
    for ids in ([], ["ses_nobody"]):
        stats = await store.message_stats(ids, today=TODAY, days=3)
        assert (stats.total, stats.by_type, stats.last_activity) == (0, {}, None)
        assert days(stats) == {} and len(stats.by_day) == 3


async def test_the_queries_use_the_stats_index(store: StoreProtocol, backend: str) -> None:
    if backend != "sqlite":
        return  # PostgreSQL's planner picks by table size; the benchmark shows its times
    for sql, params in [
        ("SELECT COUNT(*), SUM(direction = 'in' AND status != 'failed'), SUM(status = 'failed'), MAX(ts)"
         " FROM messages WHERE session_id = ?", ("ses_a",)),
        ("SELECT substr(ts, 1, 10) AS day, SUM(direction = 'out' AND status != 'failed'),"
         " SUM(direction = 'in' AND status != 'failed') FROM messages WHERE session_id = ? AND ts >= ?"
         " GROUP BY day", ("ses_a", "2026-03-01")),
    ]:
        plan = await store.fetchall("EXPLAIN QUERY PLAN " + sql, params)
        assert any("COVERING INDEX messages_stats" in str(row[-1]) for row in plan), plan
