"""Message statistics, shared by both stores: each store runs two indexed queries over the
``messages_stats`` index ``(session_id, ts, direction, status)``, which covers them: the
totals (conditional counts in one pass, no GROUP BY to sort) and a GROUP BY of the UTC days
since a date. :func:`assemble` turns their few rows into a :class:`watui.models.MessageStats`.

In both, ``received`` counts incoming messages that did not fail (none fails today) and
``failed`` every failed one, ``pending`` the sends still in a pacing queue, so ``sent``
(outgoing, neither failed nor pending) is what is left.

``by_type`` comes from a third query, a GROUP BY of the message type over the
``messages_type`` index ``(session_id, type)``; only the types present are keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

from watui.models import DayCounts, MessageStats

DayRow = tuple[str, int, int]
"""(day as YYYY-MM-DD, sent, received)"""


def day_keys(today: date, days: int) -> list[str]:
    """The ``days`` UTC days up to ``today``, oldest first, as ``YYYY-MM-DD``."""
    return [(today - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


def assemble(
    total: int, received: int, failed: int, by_day: Iterable[DayRow], last: datetime | None,
    *, today: date, days: int, by_type: Iterable[tuple[str, int]] | None = None, pending: int = 0,
) -> MessageStats:
    """The statistics from the queries' answers: the counts of every message, of the incoming
    ones and of the failed ones, and each day's sent (outgoing, not failed) and received."""
    stats = MessageStats(
        total=total, sent=total - received - failed - pending, received=received, failed=failed,
        pending=pending,
        by_type=({kind: n for kind, n in by_type if n} if by_type is not None
                 else {"text": total} if total else {}),
        by_day={day: DayCounts() for day in day_keys(today, days)}, last_activity=last,
    )
    for day, sent, got in by_day:
        slot = stats.by_day.get(day)
        if slot is not None:
            slot.sent, slot.received = sent, got
    return stats
