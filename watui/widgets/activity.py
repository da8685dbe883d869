"""The last hour at a glance: connected sessions and messages per minute, for the header's sparklines.

Minute buckets against the app's clock (a fake one in tests). Messages are counted from the
``message`` events the console hears; the connected count is sampled whenever the view state
is refreshed, and a minute without a sample keeps the last value seen.
"""

from __future__ import annotations

from datetime import datetime

SPAN_MINUTES = 60
BARS = "▁▂▃▄▅▆▇█"


def _minute(ts: datetime) -> int:
    return int(ts.timestamp() // 60)


class Activity:
    def __init__(self) -> None:
        self.connected: dict[int, int] = {}
        self.messages: dict[int, int] = {}

    def message(self, ts: datetime) -> None:
        minute = _minute(ts)
        self.messages[minute] = self.messages.get(minute, 0) + 1
        if len(self.messages) > SPAN_MINUTES * 2:
            self._prune(self.messages, minute)

    def sample_connected(self, now: datetime, count: int) -> None:
        minute = _minute(now)
        self.connected[minute] = count
        if len(self.connected) > SPAN_MINUTES * 2:
            self._prune(self.connected, minute)

    @staticmethod
    def _prune(buckets: dict[int, int], newest: int) -> None:
        for minute in [m for m in buckets if m <= newest - SPAN_MINUTES]:
            del buckets[minute]

    def series(self, now: datetime, minutes: int = SPAN_MINUTES) -> tuple[list[int], list[int]]:
        """Connected sessions and messages, one value per minute, oldest first, ending now."""
        last = _minute(now)
        first = last - minutes + 1
        connected: list[int] = []
        known = 0
        earlier = [m for m in self.connected if m < first]
        if earlier:
            known = self.connected[max(earlier)]
        for minute in range(first, last + 1):
            known = self.connected.get(minute, known)
            connected.append(known)
        messages = [self.messages.get(minute, 0) for minute in range(first, last + 1)]
        return connected, messages


def sparkline(values: list[int]) -> str:
    """One bar per value, scaled to the largest (all zero: the lowest bar)."""
    top = max(values, default=0)
    if top <= 0:
        return BARS[0] * len(values)
    steps = len(BARS) - 1
    return "".join(BARS[round(v * steps / top)] if v > 0 else BARS[0] for v in values)
