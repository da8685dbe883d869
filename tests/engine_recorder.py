"""What an engine session reports, as the tests of the real and simulated engines read it."""

from __future__ import annotations

import asyncio

from watui.engines.base import EngineEvent


class Recorder:
    """An engine session's ``report`` callback: every event kept, and the next one awaited."""

    def __init__(self, timeout: float = 20.0) -> None:
        self.timeout = timeout
        """How long :meth:`next` waits unless told."""
        self.events: list[EngineEvent] = []
        self._queue: asyncio.Queue[EngineEvent] = asyncio.Queue()

    def __call__(self, event: EngineEvent) -> None:
        self.events.append(event)
        self._queue.put_nowait(event)

    async def next(self, timeout: float | None = None) -> EngineEvent:
        return await asyncio.wait_for(self._queue.get(), self.timeout if timeout is None else timeout)
