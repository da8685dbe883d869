"""A message repeated many times is logged once per interval, then with a count."""

from __future__ import annotations

import logging
import time

import pytest

from watui.logs import RepeatFilter


def test_a_repeated_message_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("watui.test.throttle")
    throttle = RepeatFilter(interval=0.3)
    logger.addFilter(throttle)
    try:
        with caplog.at_level(logging.WARNING, logger="watui.test.throttle"):
            for n in range(1000):
                logger.warning("dropped an SSE client that stopped reading: %s", n)
            logger.warning("a different message")
            time.sleep(0.35)
            logger.warning("dropped an SSE client that stopped reading: %s", "later")
    finally:
        logger.removeFilter(throttle)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "dropped an SSE client that stopped reading: 0"
    assert messages[1] == "a different message"
    assert messages[2].startswith("dropped an SSE client that stopped reading: later (and 999 more like it")
    assert len(messages) == 3
