"""Admission: whether this node takes on one more running session now.

A session that runs costs the node for as long as it runs (its engine session, its timers, a
QR code every 20 s while it links). Past what the node can carry, work accepted now fails
later for want of time (``failed/qr_timeout``, codes that expire before anyone sees them). So
a start that would add a running session is refused up front, ``503 OVERLOADED`` with
``Retry-After``, when

- **capacity**: the node already runs ``WATUI_NODE_CAPACITY`` sessions. Running means having
  a runtime (watui/manager/runtime.py): initializing, qr_ready, connecting, connected, and
  disconnected while a reconnect is due; stopped, failed and logged-out sessions cost nothing;
- **loop lag**: the event loop's lag p99 over a recent window is above
  ``WATUI_OVERLOAD_LAG_MS``. The window is kept by whoever probes the loop (the server's
  metrics, watui/server/metrics.py) and read here as one number, so the check costs a
  comparison; without a probe (the console on its own engine) there is no lag check.

What is checked: a create with start=true, start, restart, and a pairing code that starts the
session. A restart of a running session is net zero for capacity and is checked before it
stops anything, so a refused restart leaves the session running. Never checked: stop, delete,
logout, reads, and what the node does by itself (start-up restore, a cluster takeover, a
reconnect): that work was accepted before.

Starts under way (checked, runtime not made yet: a cluster lease being claimed, an old
runtime being torn down) count as running, so concurrent starts cannot all pass the last slot.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Protocol

from watui.errors import Overloaded

CAPACITY_RETRY_AFTER = 30
"""At capacity, seconds a client is told to wait: a slot frees only when a session stops,
fails or is deleted, which a client cannot see coming."""
LAG_RETRY_AFTER = 5
"""Behind, seconds a client is told to wait: half the lag window, by when a stall that has
ended weighs half as much."""


class LagSource(Protocol):
    """The event loop's recent lag, as the server's probe keeps it."""

    def lag_p99(self) -> float | None:
        """Seconds: the p99 of the recent window; None until the window is full."""
        ...


class Admission:
    def __init__(self, capacity: int, lag_limit: float, runtimes: Mapping[str, object]) -> None:
        self.capacity = capacity
        self.lag_limit = lag_limit
        """Seconds of lag p99 above which starts are refused; 0: no lag check."""
        self.lag: LagSource | None = None
        """Set by whoever probes the event loop (the server); None: no lag check."""
        self._runtimes = runtimes
        self._starting: set[str] = set()
        self.refused: Counter[str] = Counter()
        """Refusals since start, by reason (``capacity``, ``loop_lag``), for the metrics."""

    def running(self) -> int:
        """Sessions that run here, and starts under way whose runtime does not exist yet."""
        runtimes = self._runtimes
        return len(runtimes) + sum(1 for session_id in self._starting if session_id not in runtimes)

    def check(self, session_id: str) -> None:
        """Raise :class:`~watui.errors.Overloaded` if ``session_id`` may not start now. A session
        that already runs (a restart, a start while it waits to reconnect) does not add one."""
        running = self.running()
        if session_id in self._runtimes or session_id in self._starting:
            running -= 1
        if running >= self.capacity:
            self.refused["capacity"] += 1
            raise Overloaded(
                f"The server is at capacity ({running} session{'' if running == 1 else 's'} running,"
                f" WATUI_NODE_CAPACITY={self.capacity}). Stop one, or try again in {CAPACITY_RETRY_AFTER} s.",
                details={"reason": "capacity", "capacity": self.capacity, "running": running,
                         "retry_after": CAPACITY_RETRY_AFTER},
            )
        if self.lag_limit > 0 and self.lag is not None:
            lag = self.lag.lag_p99()
            if lag is not None and lag > self.lag_limit:
                self.refused["loop_lag"] += 1
                limit_ms = round(self.lag_limit * 1000)
                raise Overloaded(
                    f"The server is falling behind: its event loop runs over {limit_ms} ms late"
                    f" (WATUI_OVERLOAD_LAG_MS). Try again in {LAG_RETRY_AFTER} s.",
                    details={"reason": "loop_lag", "capacity": self.capacity, "running": running,
                             "lag_p99_ms": round(lag * 1000), "lag_limit_ms": limit_ms,
                             "retry_after": LAG_RETRY_AFTER},
                )

    @contextlib.contextmanager
    def starting(self, session_id: str, *, check: bool = True) -> Iterator[None]:
        """Around a start, until its runtime exists (or the start failed): checked first
        (unless ``check`` is False: the node's own restores and takeovers), then counted."""
        if check:
            self.check(session_id)
        self._starting.add(session_id)
        try:
            yield
        finally:
            self._starting.discard(session_id)
