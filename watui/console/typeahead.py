"""Keys one at a time: a key typed ahead waits until the one before it has had its effect.

Textual hands every key to the widget focused *when the key is read*. Keys that arrive in
one burst (a fast typist, a laggy SSH link delivering a second's worth at once) are all read
before the first one has opened its screen or question, so ``n`` + ``billing`` + Enter lost the
name, and ``d y d y`` answered a question that was not on screen yet. The app passes each key
it reads here first: while an earlier key is still being handled (its message bubbling, the
request it posted, the screen it pushed being mounted), later keys wait in order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from textual import events
from textual.message import Message

if TYPE_CHECKING:
    from textual.app import App

QUIET_ROUNDS = 3
"""Loop turns in a row with every queue on the key's path empty: the key's effect is done."""

POLL_AFTER = 20
"""Loop turns checked back to back before polling."""

POLL_EVERY = 0.002
"""Seconds between two checks after that."""

MAX_WAIT = 1.0
"""Seconds a key may hold the next one back; after that it goes anyway (no key is ever lost)."""


class TypeAhead:
    def __init__(self, app: App[Any], *, background: tuple[type[Message], ...] = ()) -> None:
        self.app = app
        self.background = background
        """Messages that stream into the app on their own (bus events): not the key's doing."""
        self.waiting: deque[events.Key] = deque()
        self.busy = False
        self._released: events.Key | None = None
        self._task: asyncio.Task[None] | None = None

    def hold(self, event: events.Key) -> bool:
        """``True``: the key waits its turn. ``False``: handle it now (it is then tracked)."""
        if event is self._released:
            self._released = None
        elif self.busy or self.waiting:
            self.waiting.append(event)
            return True
        self.busy = True
        self._task = asyncio.get_running_loop().create_task(self._settle())
        return False

    def _app_quiet(self) -> bool:
        app = self.app
        if not app.message_queue_size:
            return True
        # A flood of bus events must not hold keys back: only what the key may have caused counts.
        queued = getattr(app._message_queue, "_queue", None)
        if queued is None or not self.background:
            return False
        return all(isinstance(message, self.background) for message in list(queued))

    def _quiet(self) -> bool:
        app = self.app
        if not self._app_quiet():
            return False
        try:
            screen = app.screen
        except Exception:
            return True
        if not screen.is_mounted or screen.message_queue_size:
            return False
        focused = screen.focused
        if focused is not None:
            return not any(node.message_queue_size for node in focused.ancestors_with_self)
        return True

    async def _settle(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MAX_WAIT
        quiet = 0
        turns = 0
        while quiet < QUIET_ROUNDS and loop.time() < deadline:
            # A few bare loop turns (most keys settle in them), then a gentle poll: a key whose
            # effect takes a while (10,000 rows to filter) must not keep the loop spinning.
            await asyncio.sleep(0 if turns < POLL_AFTER else POLL_EVERY)
            turns += 1
            quiet = quiet + 1 if self._quiet() else 0
        self.busy = False
        if self.waiting and self.app.is_running:
            self._released = self.waiting.popleft()
            self.app.post_message(self._released)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.waiting.clear()
