"""Logging set-up for the ``watui`` command: plain text or JSON lines, never a secret, never a flood.

Every line is passed through :func:`redact` after formatting (message *and* traceback), so
an API key, a webhook secret, a bearer token or the password of a URL that ends up in an
exception message is masked before it reaches a terminal, a file or a log shipper.

A repeated message is logged once per interval, not once per occurrence (:class:`RepeatFilter`).

A flood of one warning (a client dropped, ``accept()`` out of file descriptors, a receiver
down) says nothing the first line did not, and can fill a disk in minutes: the issue saw
7.7 MB of log in seconds. The first record of a kind passes; the same kind again within
``interval`` seconds is counted and dropped; the next one to pass says how many were dropped.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

LogFormat = Literal["text", "json"]

MASK = "***"

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # API keys (``wat_`` + 43 url-safe characters) and webhook secrets (``whsec_`` + base64).
    (re.compile(r"\bwat_[A-Za-z0-9_-]{8,}"), "wat_" + MASK),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+"), "whsec_" + MASK),
    # The password in ``scheme://user:password@host``.
    (re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@/\s]*@"), r"\1:" + MASK + "@"),
    # Credentials in headers and query strings.
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+"), r"\1" + MASK),
    (re.compile(r"(?i)\b((?:access_token|token|secret|api_key|password)=)[^&\s\"',]+"), r"\1" + MASK),
]


def redact(text: str) -> str:
    """``text`` with keys, secrets, bearer tokens and URL passwords masked."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    """The usual one-line text format, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log shippers: ``ts``, ``level``, ``logger``, ``message``
    (and ``exc`` with the traceback), redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact(record.exc_text)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(
    fmt: LogFormat = "text", *, level: int = logging.INFO, filename: Path | None = None
) -> logging.Handler:
    """Send every log record (uvicorn's included) to stderr or ``filename`` in ``fmt``.

    Replaces the root logger's handlers, so calling it twice does not double the lines.
    """
    handler: logging.Handler
    if filename is not None:
        handler = logging.FileHandler(filename, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else RedactingFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


# ---------------------------------------------------------------- repeats

DEFAULT_INTERVAL = 60.0
THROTTLED_LOGGERS = ("watui", "watui.server", "watui.server.streams", "watui.webhooks", "watui.stores.sqlite",
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


def throttle_repeats(interval: float = DEFAULT_INTERVAL) -> None:
    """Throttle the loggers that can repeat under load (idempotent)."""
    for name in THROTTLED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter(interval))
