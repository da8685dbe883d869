"""QR codes drawn on demand: a PNG only when someone needs one, once per code, newest first.

The server's streams, ``GET …/qr`` and webhooks all ask :data:`drawings`, this process's
queue; what a PNG looks like is :mod:`watui.qr` (:func:`~watui.qr.draw_pngs`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.process
import contextlib
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from watui.qr import PNG_SCALE, data_url, draw_png, draw_pngs

__all__ = ["OUTCOMES", "DrawBatch", "Drawings", "drawings", "png_bytes"]

log = logging.getLogger(__name__)


DrawBatch = Callable[[Sequence[str]], list[bytes | None]]
"""Draws a batch of payloads (PNG_SCALE), ``None`` for one that cannot be drawn."""

OUTCOMES: Final = ("drawn", "superseded", "expired", "overflow", "abandoned", "undrawable")
"""What became of the codes asked for: ``drawn``, or not drawn because a newer code of the
session was known (``superseded``), it expired, the queue was full and it was the oldest
waiting (``overflow``), everyone who asked went away (``abandoned``), or no QR code can hold it
(``undrawable``)."""


@dataclass(eq=False, slots=True)
class _Job:
    """One code to draw, and everyone waiting for it."""

    payload: str
    session_id: str | None
    order: int | None
    """The code's ``qr`` event id, if the asker knows it (what orders a session's codes)."""
    expires: float | None
    """Wall-clock seconds at which the code expires; ``None``: whoever asked knows it is live."""
    waiters: list[concurrent.futures.Future[bytes | None]] = field(default_factory=list)

    def merge(self, order: int | None, expires: float | None) -> None:
        if order is not None:
            self.order = order if self.order is None else max(self.order, order)
        self.expires = None if self.expires is None or expires is None else max(self.expires, expires)


def _timestamp(expires_at: datetime | str | None) -> float | None:
    if expires_at is None:
        return None
    if isinstance(expires_at, str):
        try:
            expires_at = datetime.fromisoformat(expires_at)
        except ValueError:
            return None
    return expires_at.timestamp()


class Drawings:
    """QR code PNGs, drawn when someone needs one and never on an event loop.

    - **On demand.** Nothing is drawn until someone asks (:meth:`png`, :meth:`data_url`): an
      SSE stream about to send a ``qr`` frame, ``GET /v1/sessions/{id}/qr``, a webhook of a
      ``qr`` event. A server with 20,000 sessions in QR and nobody watching draws nothing.
    - **Once per code.** Everyone asking for one code, at once or later, shares one drawing;
      the last ``remember`` PNGs are kept.
    - **Newest first.** The queue is a stack: the code asked for last is drawn first (it has
      the longest to live, and someone is looking at it now).
    - **Nothing nobody can use.** A code is dropped, undrawn, when it expired, when a newer
      code of its session is known (every asker that knows the code's event id says so:
      :meth:`note`), or when everyone who asked went away. Askers get ``None``.
    - **Bounded.** At most ``max_waiting`` codes wait; one more drops the oldest waiting.

    Thread-safe and loop-agnostic: askers on any event loop wait on a future; one thread runs
    the queue and hands batches of up to ``batch`` codes to the drawing process
    (:meth:`use_process`; the server's choice) or draws them itself (the console's: it draws a
    PNG once a QR screen, not thousands a minute).
    """

    def __init__(
        self, *, max_waiting: int = 1024, batch: int = 16, remember: int = 1024, sessions: int = 65_536,
        draw: DrawBatch | None = None, clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_waiting = max_waiting
        self.batch = batch
        self._remember = remember
        self._sessions = sessions
        self._draw_batch = draw
        """Tests inject a drawing to hold the queue still; ``None``: :func:`draw_pngs`."""
        self._clock = clock
        """Wall-clock seconds, what ``expires_at`` is compared with."""
        self.counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        """How many codes came to each of :data:`OUTCOMES` since start."""
        self._cond = threading.Condition()
        self._waiting: dict[str, _Job] = {}
        """By payload, oldest first (a dict keeps insertion order; ``popitem`` takes the newest)."""
        self._in_flight: dict[str, _Job] = {}
        self._drawn: OrderedDict[str, bytes] = OrderedDict()
        self._newest: OrderedDict[str, tuple[int, int]] = OrderedDict()
        """Per session, the newest code anyone has seen: ``(event id, hash of its payload)`` (a
        hash, not the text: a server may note tens of thousands of sessions)."""
        self._thread: threading.Thread | None = None
        self._batches_out = 0
        """Batches being drawn (at most :attr:`AHEAD`)."""
        self._in_process = False
        self._executor: concurrent.futures.Executor | None = None

    # ------------------------------------------------------------ asking

    def use_process(self) -> None:
        """Draw in a separate process from now on, started at the first drawing.

        Measured per drawing, on the asking process (``bench/bench_qr_server.py``): ~0.025 ms of
        its CPU in batches of up to 16 (~0.16 ms a code one round trip at a time), against
        ~1.05 ms drawing in a thread, all of it holding the GIL the event loop needs (zxing-cpp
        does not release it).
        """
        self._in_process = True

    def note(self, session_id: str, order: int, payload: str) -> None:
        """``payload`` is the code of ``session_id``'s ``qr`` event ``order``: an older code of
        that session still waiting is superseded."""
        with self._cond:
            self._note(session_id, order, payload)

    def need(
        self, payload: str, *, session_id: str | None = None, order: int | None = None,
        expires_at: datetime | str | None = None,
    ) -> concurrent.futures.Future[bytes | None]:
        """A future of ``payload``'s PNG, or of ``None`` if it will not be drawn (see the class).

        ``order`` (the ``qr`` event's id) and ``session_id`` let newer codes supersede it;
        ``expires_at`` (the event's) drops it once expired. Cancel the future to say you no
        longer need it.
        """
        waiter: concurrent.futures.Future[bytes | None] = concurrent.futures.Future()
        expires = _timestamp(expires_at)
        dropped: _Job | None = None
        with self._cond:
            if session_id is not None and order is not None:
                self._note(session_id, order, payload)
            png = self._drawn.get(payload)
            if png is not None:
                self._drawn.move_to_end(payload)
                waiter.set_result(png)
                return waiter
            job = self._in_flight.get(payload) or self._waiting.get(payload)
            if job is not None:
                job.merge(order, expires)
            else:
                job = _Job(payload, session_id, order, expires)
                stale = self._stale(job, self._clock())
                if stale is not None:
                    self.counts[stale] += 1
                    waiter.set_result(None)
                    return waiter
                self._waiting[payload] = job
                if len(self._waiting) > self.max_waiting:
                    dropped = self._waiting.pop(next(iter(self._waiting)))
                    self.counts["overflow"] += 1
                self._start()
                self._cond.notify()
            job.waiters.append(waiter)
        if dropped is not None:
            _resolve(dropped.waiters, None)
        return waiter

    async def png(
        self, payload: str, *, session_id: str | None = None, order: int | None = None,
        expires_at: datetime | str | None = None,
    ) -> bytes | None:
        """:meth:`need`, awaited on the running loop (cancelling the await cancels the need)."""
        future = self.need(payload, session_id=session_id, order=order, expires_at=expires_at)
        if future.done():
            return future.result()
        return await asyncio.wrap_future(future)

    async def data_url(
        self, payload: str, *, session_id: str | None = None, order: int | None = None,
        expires_at: datetime | str | None = None,
    ) -> str | None:
        """:meth:`png` as ``data:image/png;base64,…`` (``qr_data``)."""
        png = await self.png(payload, session_id=session_id, order=order, expires_at=expires_at)
        return None if png is None else data_url(png)

    def peek(self, payload: str) -> bytes | None:
        """The PNG if it was drawn (and is still remembered); never draws."""
        with self._cond:
            return self._drawn.get(payload)

    def draw_now(self, payload: str, scale: int = PNG_SCALE) -> bytes:
        """Draw on the calling thread (:func:`png_bytes`), unless already drawn."""
        if scale == PNG_SCALE:
            drawn = self.peek(payload)
            if drawn is not None:
                return drawn
        png = draw_png(payload, scale)
        with self._cond:
            self.counts["drawn"] += 1
            if scale == PNG_SCALE:
                self._keep(payload, png)
        return png

    def close(self) -> None:
        """Stop the drawing process, if one runs (a new one starts for the next drawing)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    @property
    def drawn(self) -> int:
        """PNGs drawn since start."""
        return self.counts["drawn"]

    def idle(self) -> bool:
        """Nothing waiting and nothing being drawn."""
        with self._cond:
            return not self._waiting and not self._in_flight

    # ------------------------------------------------------------ the queue

    def _note(self, session_id: str, order: int, payload: str) -> None:
        known = self._newest.get(session_id)
        if known is None or order > known[0]:
            self._newest[session_id] = (order, hash(payload))
            self._newest.move_to_end(session_id)
            if len(self._newest) > self._sessions:
                self._newest.popitem(last=False)

    def _stale(self, job: _Job, now: float) -> str | None:
        if job.expires is not None and now >= job.expires:
            return "expired"
        if job.session_id is not None and job.order is not None:
            known = self._newest.get(job.session_id)
            if known is not None and known[0] > job.order and known[1] != hash(job.payload):
                return "superseded"
        return None

    def _keep(self, payload: str, png: bytes) -> None:
        self._drawn[payload] = png
        self._drawn.move_to_end(payload)
        while len(self._drawn) > self._remember:
            self._drawn.popitem(last=False)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="watui-qr-drawings", daemon=True)
            self._thread.start()

    def _take(self) -> tuple[list[_Job], list[_Job]]:
        """Up to ``batch`` codes to draw now, newest first, and the stale ones dropped on the way."""
        batch: list[_Job] = []
        dropped: list[_Job] = []
        now = self._clock()
        while self._waiting and len(batch) < self.batch:
            payload, job = self._waiting.popitem()
            job.waiters = [waiter for waiter in job.waiters if not waiter.cancelled()]
            stale = "abandoned" if not job.waiters else self._stale(job, now)
            if stale is not None:
                self.counts[stale] += 1
                dropped.append(job)
                continue
            self._in_flight[payload] = job
            batch.append(job)
        return batch, dropped

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting or self._batches_out >= self.AHEAD:
                    self._cond.wait()
                batch, dropped = self._take()
                self._batches_out += bool(batch)
            for job in dropped:
                _resolve(job.waiters, None)
            if batch:
                self._draw(batch)

    AHEAD = 2
    """Batches handed to the drawing process at once: it starts the next as it finishes one,
    without waiting for this process (whose GIL the event loop may hold) to hand it over."""

    def _draw(self, batch: list[_Job]) -> None:
        payloads = [job.payload for job in batch]
        if self._draw_batch is None and self._in_process:
            if self._executor is None:
                self._executor = _drawing_process()
                self._in_process = self._executor is not None
            if self._executor is not None:
                try:
                    future = self._executor.submit(draw_pngs, payloads)
                except RuntimeError:  # a broken or closed pool: a new one for the next codes
                    self._executor = None
                except (OSError, ValueError) as exc:  # cannot start a process here: draw in this thread
                    log.warning("cannot start the QR drawing process (%s); drawing in a thread", exc)
                    self._executor = None
                    self._in_process = False
                else:
                    future.add_done_callback(lambda done: self._drawn_in_process(batch, done))
                    return
        try:
            pngs = (self._draw_batch or draw_pngs)(payloads)
        except Exception:  # a bug: these codes go without a PNG, the queue goes on
            log.exception("drawing %d QR codes failed", len(batch))
            pngs = [None] * len(batch)
        self._finish(batch, pngs)

    def _drawn_in_process(self, batch: list[_Job], done: concurrent.futures.Future[list[bytes | None]]) -> None:
        try:
            pngs = done.result()
        except Exception as exc:  # the process died (or was closed): a new one for the next codes
            log.warning("the QR drawing process failed (%s); these %d codes go without a PNG",
                        type(exc).__name__, len(batch))
            self._executor = None
            pngs = [None] * len(batch)
        self._finish(batch, pngs)

    def _finish(self, batch: list[_Job], pngs: list[bytes | None]) -> None:
        with self._cond:
            for job, png in zip(batch, pngs, strict=True):
                del self._in_flight[job.payload]
                if png is None:
                    self.counts["undrawable"] += 1
                else:
                    self.counts["drawn"] += 1
                    self._keep(job.payload, png)
            self._batches_out -= 1
            self._cond.notify()
        for job, png in zip(batch, pngs, strict=True):
            _resolve(job.waiters, png)


def _resolve(waiters: list[concurrent.futures.Future[bytes | None]], png: bytes | None) -> None:
    for waiter in waiters:
        # A waiter cancelled just now (its stream ended) is fine to skip.
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            waiter.set_result(png)


def _drawing_process() -> concurrent.futures.Executor | None:
    """One process that draws QR codes; ``None`` where processes cannot be started."""
    try:
        _start_resource_tracker()
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"),
            initializer=_detach, initargs=(os.getpid(),),
        )
    except (OSError, ValueError, NotImplementedError) as exc:
        log.warning("cannot start a QR drawing process (%s); drawing in a thread", exc)
        return None


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker while it can be handed a real stderr.

    The tracker is started with ``sys.stderr.fileno()`` among the descriptors it keeps; a
    Textual app replaces ``sys.stderr`` with a capture whose ``fileno()`` is -1, and the
    start then fails with "bad value(s) in fds_to_keep". Starting it here, from the real
    stderr when the current one has no descriptor, keeps the drawing process usable in a
    process that also runs the console (``watui`` attached to its own in-process server).
    """
    from multiprocessing import resource_tracker

    try:
        usable = sys.stderr is not None and sys.stderr.fileno() >= 0
    except (AttributeError, OSError, ValueError):
        usable = False
    if usable or sys.__stderr__ is None:
        resource_tracker.ensure_running()
        return
    with contextlib.redirect_stderr(sys.__stderr__):
        resource_tracker.ensure_running()


def _detach(parent: int) -> None:
    """In the drawing process: hold none of the parent's output pipes, and end with the parent
    (killed with ``kill -9`` it cannot say goodbye; the drawer must not outlive it)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="watui-qr-parent", daemon=True).start()


drawings: Final = Drawings()
"""This process's drawings: the server's streams, ``GET …/qr`` and webhooks all ask it."""


def png_bytes(payload: str, *, scale: int = PNG_SCALE) -> bytes:
    """The PNG of ``payload``, drawn here and now unless :data:`drawings` already has it.

    For scripts and tests, which may block: the server asks :data:`drawings` instead, which
    never draws on the event loop.
    """
    return drawings.draw_now(payload, scale)
