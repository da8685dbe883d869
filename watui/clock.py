"""Time, injectable: the manager's timers and the simulated engine read one clock.

Tests use :class:`FakeClock` and move time with ``advance`` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...
    def monotonic(self) -> float: ...
    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle: ...
    async def sleep(self, delay: float) -> None: ...


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(max(0.0, delay))


class _FakeTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that only moves when told to. Timers fire in order during ``advance``."""

    def __init__(self, start: datetime | None = None) -> None:
        self._epoch = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        self._t = 0.0
        self._heap: list[tuple[float, int, _FakeTimer]] = []
        self._seq = itertools.count()
        self.idle: Callable[[], Awaitable[None]] | None = None
        """Awaited after each timer fires, so that work with real I/O in it (store writes)
        finishes before time moves on. The manager sets it to its ``drain_all``."""

    def now(self) -> datetime:
        return self._epoch + timedelta(seconds=self._t)

    def monotonic(self) -> float:
        return self._t

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        timer = _FakeTimer(self._t + max(0.0, delay), callback)
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        return timer

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        self.call_later(delay, wake)
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward, firing due timers in order and letting tasks react between them."""
        target = self._t + seconds
        while self._heap and self._heap[0][0] <= target:
            when, _, timer = heapq.heappop(self._heap)
            self._t = max(self._t, when)
            if not timer.cancelled:
                timer.callback()
                await self._settle()
        self._t = target
        await self._settle()

    async def _settle(self) -> None:
        await settle()
        if self.idle is not None:
            await self.idle()

    @property
    def pending(self) -> int:
        return sum(1 for _, _, t in self._heap if not t.cancelled)


async def settle(rounds: int = 20) -> None:
    """Let ready tasks run: yield to the loop a few times."""
    for _ in range(rounds):
        await asyncio.sleep(0)
