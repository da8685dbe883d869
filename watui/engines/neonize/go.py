"""The Go side of neonize as Python reaches it: the library, blocking calls, the start lock.

The neonize package is imported lazily: importing it loads an 18 MB Go runtime and calls
``logging.basicConfig``, which the simulated engine and the tests of other layers don't need.
Importing it also runs ``os.popen("uname -a")`` twice (its platform probe) and drops both
pipes unclosed, which leaves two ``sh`` children behind as zombies until the next
``subprocess`` call happens to reap them; :func:`_go` waits for them once the library is in.

Its Go calls block (a dial waits up to 60 s, ``Neonize()`` for the life of a link), so they
run on daemon threads of their own (:func:`_in_thread`). The Go side keeps its clients in
plain maps without locks, so the calls that write them are serialised (:class:`_StartGate`);
why and when is told in :mod:`watui.engines.neonize.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

PROBE_COMMAND = "uname -a"
"""What neonize's platform probe runs through ``os.popen`` when it is imported."""


class _StartGate:
    """One attempt's holds on the process-wide lock around neonize's unlocked Go map writes.

    ``Neonize()`` writes its three maps in its first moments, before it dials, and
    ``Stop`` deletes from them; both run under :attr:`lock`. An attempt holds it twice at
    most (see :mod:`.run`): from before its ``Neonize()`` call until its dial reaches its relay
    (the writes are done by then), and from the first bytes WhatsApp answers until its first
    callback (the reads neonize makes once connected). Each hold ends at whichever comes first
    of its end, the call's return, or ``grace`` seconds (a backstop: an attempt whose dial
    cannot be seen, behind an ``https://`` proxy, holds it that long).
    """

    lock = threading.Lock()

    def __init__(self, grace: float) -> None:
        self._grace = grace
        self._held = False
        self._guard = threading.Lock()
        self._timer: threading.Timer | None = None

    @property
    def held(self) -> bool:
        return self._held

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
        self._hold()
        return True

    def try_enter(self) -> bool:
        """Take the lock if it is free (never blocks); True if this attempt now holds it."""
        if self._held:
            return True
        if not self.lock.acquire(blocking=False):
            return False
        self._hold()
        return True

    def _hold(self) -> None:
        with self._guard:
            self._held = True
            self._timer = threading.Timer(self._grace, self.release)
            self._timer.daemon = True
            self._timer.start()

    def release(self) -> None:
        """End this attempt's hold, if it has one (any thread; idempotent)."""
        with self._guard:
            if not self._held:
                return
            self._held = False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.lock.release()


_loaded = threading.Lock()
_probe_reaped = False


def _go() -> Any:
    """The loaded goneonize library (lazy: see the module docstring)."""
    global _probe_reaped
    from neonize._binder import gocode

    if not _probe_reaped:
        with _loaded:
            if not _probe_reaped:
                _reap_probe()
                _probe_reaped = True
    return gocode


def _reap_probe(timeout: float = 5.0) -> int:
    """Wait for the ``sh`` children of neonize's platform probe; returns how many it waited for.

    Their ``Popen`` objects are unreachable from neonize (the pipes were dropped), so they are
    found among the live objects: only ``Popen``s running exactly the probe's command, so a
    child of anyone else is never touched. Blocking (a few milliseconds): call it off the loop.
    """
    probes = [
        obj for obj in gc.get_objects()
        if isinstance(obj, subprocess.Popen) and obj.args == PROBE_COMMAND and obj.returncode is None
    ]
    for probe in probes:
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            probe.wait(timeout)
    return len(probes)


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
