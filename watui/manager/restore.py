"""Start-up restore: bring back the sessions that were running, a few connects at a time.

Reconnecting hundreds of linked sessions at once would stampede WhatsApp (and, with the real
engine, the start gate and the machine). So the restore runs in the background, after the
manager is open (the server answers meanwhile), and keeps at most
``Settings.restore_concurrency`` connects in flight: linked sessions first, each after a
small random delay, then the sessions that were still pairing. A connect is "in flight"
from the moment it is made until the engine reports its first outcome (connected, a QR code,
an error, a drop) or the session is stopped; after that the session is on its own (its
reconnect back-off, its QR rounds).

``SessionManager.restore_progress`` says how far it got (``done`` of ``total``) and is
``None`` once every queued session had its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from watui.machine import RUNNING, Status
from watui.models import RestoreProgress

if TYPE_CHECKING:
    from watui.manager import SessionManager

log = logging.getLogger(__name__)

JITTER = 0.25
"""Upper bound of the random delay (seconds) before each linked session's connect."""
SETTLE_TIMEOUT = 90.0
"""A connect that reports nothing for this long gives its slot up (the engine's own
connect timeout normally answers well before)."""

Settled = Callable[[], None]


class Restorer:
    """Runs the restore queue; ``busy`` counts the steps under way that are not waiting on
    an engine (``SessionManager.drain_all`` waits for those, so a fake clock sees them)."""

    def __init__(self, manager: SessionManager, *, concurrency: int, jitter: float = JITTER) -> None:
        self.manager = manager
        self.concurrency = max(1, concurrency)
        self.jitter = jitter
        self.busy = 0
        self._queue: deque[str] = deque()
        self._rng = random.Random()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.busy = 1  # the prologue: parking and queueing
        self._task = asyncio.get_running_loop().create_task(self._run(), name="watui-restore")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.busy = 0
        self.manager.restore_progress = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ---------------------------------------------------------------- the queue

    async def _run(self) -> None:
        manager = self.manager
        workers: list[asyncio.Task[None]] = []
        try:
            await self._park_crashed()
            sessions = [
                s for s in manager.registry.sessions.values() if s.autostart and s.status is Status.DISCONNECTED
            ]
            # Linked sessions first (they resume without anyone at the phone), oldest first.
            ordered = [s.id for s in sessions if s.linked] + [s.id for s in sessions if not s.linked]
            self._queue.extend(ordered)
            if ordered:
                manager.restore_progress = RestoreProgress(done=0, total=len(ordered))
                log.info("restoring %d sessions, %d at a time", len(ordered), self.concurrency)
            workers = [
                asyncio.create_task(self._worker(), name="watui-restore-worker")
                for _ in range(min(self.concurrency, len(ordered)))
            ]
            self.busy += len(workers)  # each worker starts busy
        finally:
            self.busy -= 1
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            manager.restore_progress = None

    async def _park_crashed(self) -> None:
        """Sessions still marked running: the process ended while they ran (a crash)."""
        crashed = [s.id for s in self.manager.registry.sessions.values() if s.status in RUNNING]
        for start in range(0, len(crashed), 500):
            await asyncio.gather(
                *(self.manager._park_crashed(i) for i in crashed[start : start + 500]),
                return_exceptions=True,
            )

    async def _worker(self) -> None:
        try:
            while self._queue:
                session_id = self._queue.popleft()
                loop = asyncio.get_running_loop()
                settled: asyncio.Future[None] = loop.create_future()
                delay = self._rng.uniform(0, self.jitter)
                try:
                    waiting = await self.manager._restore_one(
                        session_id, delay=delay, on_settled=partial(self._wake, settled)
                    )
                except Exception:
                    log.exception("restoring session %s failed", session_id)
                    waiting = False
                if waiting:
                    self.busy -= 1
                    try:
                        await asyncio.wait_for(settled, SETTLE_TIMEOUT)
                    except TimeoutError:
                        log.warning("session %s: no outcome %.0f s into its restore", session_id, SETTLE_TIMEOUT)
                        self.busy += 1
                self._advance()
        finally:
            self.busy -= 1

    def _wake(self, settled: asyncio.Future[None]) -> None:
        """The session's connect has an outcome: its worker may take the next one."""
        if not settled.done():
            self.busy += 1  # counted before the worker runs, so drain_all waits for it
            settled.set_result(None)

    def _advance(self) -> None:
        progress = self.manager.restore_progress
        if progress is not None:
            self.manager.restore_progress = RestoreProgress(done=progress.done + 1, total=progress.total)
