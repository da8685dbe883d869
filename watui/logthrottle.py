"""Log a repeated message once per interval, not once per occurrence.

A flood of one warning (a client dropped, ``accept()`` out of file descriptors, a receiver
down) says nothing the first line did not, and can fill a disk in minutes: the issue saw
7.7 MB of log in seconds. The first record of a kind passes; the same kind again within
``interval`` seconds is counted and dropped; the next one to pass says how many were dropped.
"""

from __future__ import annotations

import logging
import threading
import time

DEFAULT_INTERVAL = 60.0
THROTTLED_LOGGERS = ("watui", "watui.server", "watui.server.streams", "watui.webhooks", "watui.store",
                     "asyncio", "uvicorn.error")


class RepeatFilter(logging.Filter):
    """Passes one record per (logger, level, message template) per ``interval`` seconds."""

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        with self._lock:
            seen = self._last.get(key)
            if seen is not None and now - seen[0] < self.interval:
                self._last[key] = (seen[0], seen[1] + 1)
                return False
            self._last[key] = (now, 0)
            if len(self._last) > 10_000:  # many distinct messages: forget the oldest half
                for old in sorted(self._last, key=lambda k: self._last[k][0])[:5_000]:
                    del self._last[old]
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} (and {seen[1]} more like it in the last {now - seen[0]:.0f} s)"
        return True


def install(interval: float = DEFAULT_INTERVAL) -> None:
    """Throttle the loggers that can repeat under load (idempotent)."""
    for name in THROTTLED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter(interval))
