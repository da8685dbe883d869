"""The Go side of neonize as Python reaches it: the library, blocking calls, the start lock.

The neonize package is imported lazily: importing it loads an 18 MB Go runtime and calls
``logging.basicConfig``, which the simulated engine and the tests of other layers don't need.

Its Go calls block (a dial waits up to 60 s, ``Neonize()`` for the life of a link), so they
run on daemon threads of their own (:func:`_in_thread`). The Go side keeps its clients in
plain maps without locks, so the calls that write them are serialised (:class:`_StartGate`);
why and when is told in :mod:`watui.engines.neonize.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class _StartGate:
    """Serialises neonize's unlocked Go map writes (``Neonize()`` start-up and ``Stop``).

    ``Neonize()`` writes its maps during its first moments and then blocks for the life of the
    link, so the lock it takes is released by whichever comes first: its first callback, its
    return, or ``grace`` seconds (the writes happen right after opening the database).
    """

    lock = threading.Lock()

    def __init__(self, grace: float) -> None:
        self._grace = grace
        self._held = False
        self._guard = threading.Lock()
        self._timer: threading.Timer | None = None

    def enter(self, give_up: Callable[[], bool]) -> bool:
        """Wait for the lock; returns False (without it) as soon as ``give_up()`` is true.

        Polling lets an attempt that is closed while it queues leave the queue at once
        instead of reaching ``Neonize()`` after its session is gone.
        """
        while not self.lock.acquire(timeout=0.05):
            if give_up():
                return False
        if give_up():
            self.lock.release()
            return False
        with self._guard:
            self._held = True
            self._timer = threading.Timer(self._grace, self.release)
            self._timer.daemon = True
            self._timer.start()
        return True

    def release(self) -> None:
        with self._guard:
            if not self._held:
                return
            self._held = False
            if self._timer is not None:
                self._timer.cancel()
            self.lock.release()


def _go() -> Any:
    """The loaded goneonize library (lazy: see the module docstring)."""
    from neonize._binder import gocode

    return gocode


def _in_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """Run a blocking neonize call on a fresh daemon thread and await its result.

    Not ``asyncio.to_thread``: a Go call can outlive its caller (a dial waits up to 60 s), and
    default-executor threads are joined at interpreter exit and shared with the whole app.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def main() -> None:
        try:
            result = fn()
        except BaseException as exc:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(settle, None, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=main, name="watui-neonize-call", daemon=True).start()
    return future
