"""QR codes for linking a phone: payload → module matrix → terminal cells, PNG, data URL.

One place turns WhatsApp's pairing payload into modules (:func:`_matrix`, zxing-cpp's encoder),
so the console's block drawing (:mod:`watui.widgets.qr_view` styles these cells) and the
server's ``qr_data`` PNG always show the same code.

The terminal drawing comes in three grains (:data:`BLOCK_MODES`, coarsest first), and the
console takes the coarsest one that fits its terminal:

- half blocks: ``▀`` with an explicit foreground (top module) *and* background (bottom
  module) colour, 1×2 modules a cell (:func:`half_block_cells`);
- quadrants (U+2596-259F with ``▀ ▄ ▌ ▐ █`` and space), 2×2 modules a cell;
- sextants (U+1FB00-1FB3B with space ``▌ ▐ █``), 2×3 modules a cell: nearly square modules
  on a 1:2 cell, so WhatsApp's 57-module code (65 with the quiet zone) takes 33×22 cells.

Quadrants and sextants are drawn as dark ink on light paper (:func:`block_lines`): each
cell's glyph covers exactly its dark modules, and the console gives every cell the same
``DARK`` foreground and ``LIGHT`` background. Either way every cell has both colours set, so
the code scans the same way on dark and light terminal themes.

PNGs are drawn only when someone needs one (:data:`drawings`): the code's text is the fact,
the picture is a view of it that a server with thousands of sessions in QR cannot afford to
draw for nobody.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import concurrent.futures.process
import contextlib
import logging
import multiprocessing
import os
import struct
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Final

import zxingcpp

__all__ = [
    "BLOCK_MODES",
    "DARK",
    "DATA_URL_PREFIX",
    "ERROR_CORRECTION",
    "HALF",
    "HALF_BLOCK",
    "LIGHT",
    "PNG_SCALE",
    "QUADRANT",
    "QUADRANT_GLYPHS",
    "QUIET_ZONE",
    "SEXTANT",
    "SEXTANT_GLYPHS",
    "BlockMode",
    "Drawings",
    "HalfBlockCell",
    "block_lines",
    "blocks",
    "data_url",
    "draw_png",
    "drawings",
    "half_block_cells",
    "png_bytes",
    "png_of_data_url",
    "qr_matrix",
    "terminal_size",
]

log = logging.getLogger(__name__)

#: Modules of light border on every side; ISO/IEC 18004 asks for 4, and phones need it
#: to find the finder patterns against a busy terminal around the code.
QUIET_ZONE: Final = 4

#: Level L keeps the code as small as possible (a ~230-character WhatsApp payload is a
#: version 9 code, 61 columns × 31 lines with the quiet zone) so it fits a small terminal.
#: A screen is never torn or smudged, so the extra redundancy of M/Q/H buys little.
ERROR_CORRECTION: Final = "L"

HALF_BLOCK: Final = "▀"
DARK: Final = "#000000"
LIGHT: Final = "#ffffff"

#: ``(top_is_dark, bottom_is_dark)`` for one terminal cell.
HalfBlockCell = tuple[bool, bool]

_CACHE_SIZE: Final = 1024


@dataclass(frozen=True, slots=True)
class BlockMode:
    """How many modules one terminal cell draws: ``across`` × ``down``.

    A cell's modules are numbered in reading order (left to right, then down); bit ``i`` of
    a cell's *pattern* is set when module ``i`` is dark. ``glyphs[pattern]`` is the character
    whose ink covers exactly those modules; half blocks have none, since they are drawn in two
    colours instead (:func:`half_block_cells`).
    """

    name: str
    across: int
    down: int
    glyphs: str = ""


#: The quadrant block elements by pattern (1 = upper left, 2 = upper right, 4 = lower
#: left, 8 = lower right): U+2596-259F plus the half and full blocks and space.
QUADRANT_GLYPHS: Final = " ▘▝▀▖▌▞▛▗▚▐▜▄▙▟█"


def _sextant_glyph(pattern: int) -> str:
    """Unicode's ``BLOCK SEXTANT-…`` for ``pattern`` (bit 0 = sextant 1, upper left; bit 5 =
    sextant 6, lower right). U+1FB00 counts the patterns up from 1 but leaves out the four
    that existing characters draw: none (space), the left column (``▌``), the right column
    (``▐``) and all six (``█``)."""
    left, right, full = 0b010101, 0b101010, 0b111111
    existing = {0: " ", left: "▌", right: "▐", full: "█"}
    if pattern in existing:
        return existing[pattern]
    return chr(0x1FB00 + pattern - 1 - (pattern > left) - (pattern > right))


#: The sextant glyphs by pattern, 64 of them.
SEXTANT_GLYPHS: Final = "".join(_sextant_glyph(pattern) for pattern in range(64))

HALF: Final = BlockMode("half blocks", 1, 2)
QUADRANT: Final = BlockMode("quadrants", 2, 2, QUADRANT_GLYPHS)
SEXTANT: Final = BlockMode("sextants", 2, 3, SEXTANT_GLYPHS)

#: Coarsest first: the bigger a module on screen, the easier a camera reads it, and the
#: more terminals and fonts draw the characters (sextants are the youngest, Unicode 13).
BLOCK_MODES: Final = (HALF, QUADRANT, SEXTANT)


_DARK_MODULES: Final = bytes([1]) + bytes(255)
"""``bytes.translate`` table for zxing's 8-bit image: 0 (a dark module) → 1, 255 (light) → 0."""


@lru_cache(maxsize=_CACHE_SIZE)
def _matrix(payload: str, quiet_zone: int) -> tuple[tuple[bool, ...], ...]:
    """Immutable, cached matrix; the public function hands out copies."""
    return _encode(payload, quiet_zone)


def _encode(payload: str, quiet_zone: int) -> tuple[tuple[bool, ...], ...]:
    """The one place a payload becomes modules (terminal cells and PNGs are drawn from this).

    zxing-cpp's encoder (zint, in C) picks the smallest version and scores all eight masks in
    about half a millisecond; qrcode's pure-Python mask search took 17-28 ms per code.
    """
    if quiet_zone < 0:
        raise ValueError(f"quiet_zone must be >= 0, got {quiet_zone}")
    try:
        symbol = zxingcpp.create_barcode(payload, zxingcpp.BarcodeFormat.QRCode, ec_level=ERROR_CORRECTION)
    except ValueError as exc:
        if "too long" in str(exc).lower():
            raise ValueError(f"payload of {len(payload)} characters is too long for a QR code") from exc
        raise ValueError(f"cannot make a QR code of this payload: {exc}") from exc
    image = symbol.to_image(scale=1, add_quiet_zones=False)
    height, width = image.shape
    modules = bytes(memoryview(image)).translate(_DARK_MODULES)  # type: ignore[arg-type]  # a buffer, untyped
    side = (False,) * quiet_zone
    light = ((False,) * (width + 2 * quiet_zone),) * quiet_zone
    rows = tuple(side + tuple(map(bool, modules[y * width:(y + 1) * width])) + side for y in range(height))
    return light + rows + light


def qr_matrix(payload: str, *, quiet_zone: int = QUIET_ZONE) -> list[list[bool]]:
    """The QR modules for ``payload``, ``True`` = dark, quiet zone included.

    Returns a fresh list each call (callers may mutate it); the work behind it is cached.
    Raises :class:`ValueError` if the payload does not fit in a version 40 code.
    """
    return [list(row) for row in _matrix(payload, quiet_zone)]


@lru_cache(maxsize=_CACHE_SIZE)
def half_block_cells(payload: str) -> tuple[tuple[HalfBlockCell, ...], ...]:
    """The terminal drawing as plain data: one tuple per line, one ``(top, bottom)`` per cell.

    Two matrix rows per line; an odd last row is paired with a light row, which just
    widens the bottom quiet zone by one module.
    """
    rows = _matrix(payload, QUIET_ZONE)
    width = len(rows[0])
    light_row = (False,) * width
    lines: list[tuple[HalfBlockCell, ...]] = []
    for y in range(0, len(rows), 2):
        top = rows[y]
        bottom = rows[y + 1] if y + 1 < len(rows) else light_row
        lines.append(tuple(zip(top, bottom, strict=True)))
    return tuple(lines)


@lru_cache(maxsize=_CACHE_SIZE)
def block_lines(payload: str, mode: BlockMode) -> tuple[str, ...]:
    """The code in quadrants or sextants (:func:`blocks` of its matrix), quiet zone included."""
    return blocks(_matrix(payload, QUIET_ZONE), mode)


def blocks(rows: Sequence[Sequence[bool]], mode: BlockMode) -> tuple[str, ...]:
    """A module matrix in quadrants or sextants: one string per terminal line, dark as ink.

    Drawn with a dark foreground on a light background in every cell. The matrix is padded
    with light modules on the right and at the bottom to whole cells, which only widens the
    quiet zone there.
    """
    if not mode.glyphs:
        raise ValueError(f"{mode.name} are drawn in two colours: use half_block_cells")
    across, down, glyphs = mode.across, mode.down, mode.glyphs
    width = max(map(len, rows), default=0)
    columns, lines = -(-width // across), -(-len(rows) // down)
    light = [False] * (columns * across)
    padded = [[*row, *light[len(row):]] for row in rows]
    padded += [light] * (lines * down - len(rows))
    out: list[str] = []
    for y in range(0, len(padded), down):
        band = padded[y : y + down]
        cells: list[str] = []
        for x in range(0, columns * across, across):
            pattern = 0
            bit = 1
            for row in band:
                for dark in row[x : x + across]:
                    if dark:
                        pattern |= bit
                    bit <<= 1
            cells.append(glyphs[pattern])
        out.append("".join(cells))
    return tuple(out)


def terminal_size(payload: str, mode: BlockMode = HALF) -> tuple[int, int]:
    """``(columns, lines)`` needed to draw the code in ``mode`` without cropping."""
    size = len(_matrix(payload, QUIET_ZONE))
    return -(-size // mode.across), -(-size // mode.down)


# ================================================================ PNG

#: Pixels per module in the PNGs the server sends (``qr_data``, ``GET /v1/sessions/{id}/qr``).
PNG_SCALE: Final = 8

DATA_URL_PREFIX: Final = "data:image/png;base64,"

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"

_ONE_BYTE_A_MODULE: Final = bytes([0xFF, 0x00]) + bytes(254)
"""At 8 pixels a module one byte of a 1-bit line is one module: light (0) → ``0xFF`` (eight
white pixels), dark (1) → ``0x00``."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_line(row: tuple[bool, ...], scale: int, stride: int) -> bytes:
    """One line of pixels, 1 bit each (1 = white), padded to ``stride`` bytes."""
    if scale == 8:
        return bytes(row).translate(_ONE_BYTE_A_MODULE)
    bits = 0
    white = (1 << scale) - 1
    for dark in row:
        bits = (bits << scale) | (0 if dark else white)
    return (bits << (stride * 8 - len(row) * scale)).to_bytes(stride, "big")


def draw_png(payload: str, scale: int = PNG_SCALE) -> bytes:
    """A black-on-white PNG of the code, ``scale`` pixels per module, quiet zone included.

    The PNG is not cached here (:data:`drawings` remembers the ones it drew), its matrix is.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    return _png(_matrix(payload, QUIET_ZONE), scale)


def _png(rows: tuple[tuple[bool, ...], ...], scale: int) -> bytes:
    """Written directly, 1-bit greyscale: each module row is one line of bytes repeated
    ``scale`` times (zlib folds the repeats into back-references). About 0.3 ms and 880 bytes
    for WhatsApp's code, where Pillow's resize and optimised save took 2.7-3 ms for 1,240."""
    width = len(rows) * scale
    stride = (width + 7) // 8
    lines = b"".join((b"\x00" + _png_line(row, scale, stride)) * scale for row in rows)  # filter 0
    header = struct.pack(">IIBBBBB", width, width, 1, 0, 0, 0, 0)  # 1-bit greyscale, no interlace
    return b"".join((_PNG_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", zlib.compress(lines, 6)),
                     _chunk(b"IEND", b"")))


def data_url(png: bytes) -> str:
    """``data:image/png;base64,…``: a PNG as the ``qr`` event's ``qr_data`` carries it."""
    return DATA_URL_PREFIX + base64.b64encode(png).decode("ascii")


def png_of_data_url(url: str) -> bytes:
    """The PNG inside a :func:`data_url`."""
    if not url.startswith(DATA_URL_PREFIX):
        raise ValueError("not a PNG data URL")
    return base64.b64decode(url[len(DATA_URL_PREFIX):], validate=True)


def png_bytes(payload: str, *, scale: int = PNG_SCALE) -> bytes:
    """The PNG of ``payload``, drawn here and now unless :data:`drawings` already has it.

    For scripts and tests, which may block: the server asks :data:`drawings` instead, which
    never draws on the event loop.
    """
    return drawings.draw_now(payload, scale)


def draw_pngs(payloads: Sequence[str]) -> list[bytes | None]:
    """One batch of :data:`drawings` (in the drawing process): ``None`` for a payload that no QR
    code can hold. Nothing is cached: every code comes here once."""
    out: list[bytes | None] = []
    for payload in payloads:
        try:
            out.append(_png(_encode(payload, QUIET_ZONE), PNG_SCALE))
        except ValueError:
            out.append(None)
    return out


# ================================================================ drawing on demand

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
