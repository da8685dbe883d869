"""QR codes for linking a phone: payload → module matrix → terminal cells, PNG, data URL.

One place turns WhatsApp's pairing payload into pixels, so the console's block drawing
(:mod:`watui.widgets.qr_view` styles these cells) and the server's ``qr_data`` PNG always
show the same code.

Everything is cached per payload: the console redraws the same code many times a second
while it is up, and every SSE subscriber of a session asks for the same data URL.

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
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import concurrent.futures.process
import io
import multiprocessing
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import qrcode
import qrcode.constants
import qrcode.exceptions
from PIL import Image

__all__ = [
    "BLOCK_MODES",
    "DARK",
    "ERROR_CORRECTION",
    "HALF",
    "HALF_BLOCK",
    "LIGHT",
    "QUADRANT",
    "QUADRANT_GLYPHS",
    "QUIET_ZONE",
    "SEXTANT",
    "SEXTANT_GLYPHS",
    "BlockMode",
    "HalfBlockCell",
    "block_lines",
    "blocks",
    "half_block_cells",
    "png_bytes",
    "png_data_url",
    "prerender",
    "qr_matrix",
    "terminal_size",
]

#: Modules of light border on every side; ISO/IEC 18004 asks for 4, and phones need it
#: to find the finder patterns against a busy terminal around the code.
QUIET_ZONE: Final = 4

#: Level L keeps the code as small as possible (a ~230-character WhatsApp payload is a
#: version 9 code, 61 columns × 31 lines with the quiet zone) so it fits a small terminal.
#: A screen is never torn or smudged, so the extra redundancy of M/Q/H buys little.
ERROR_CORRECTION: Final = qrcode.constants.ERROR_CORRECT_L

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


@lru_cache(maxsize=_CACHE_SIZE)
def _matrix(payload: str, quiet_zone: int) -> tuple[tuple[bool, ...], ...]:
    """Immutable, cached matrix; the public function hands out copies."""
    if quiet_zone < 0:
        raise ValueError(f"quiet_zone must be >= 0, got {quiet_zone}")
    code = qrcode.QRCode(version=None, error_correction=ERROR_CORRECTION, border=quiet_zone)
    code.add_data(payload)
    try:
        code.make(fit=True)
    except (qrcode.exceptions.DataOverflowError, ValueError) as exc:
        # qrcode 8 reports "needs version 41" as a plain ValueError, older ones overflow.
        raise ValueError(f"payload of {len(payload)} characters is too long for a QR code") from exc
    return tuple(tuple(bool(module) for module in row) for row in code.get_matrix())


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


@lru_cache(maxsize=_CACHE_SIZE)
def png_bytes(payload: str, *, scale: int = 8) -> bytes:
    """A black-on-white 1-bit PNG of the code, ``scale`` pixels per module, quiet zone included.

    Cached because ``GET /sessions/{id}/qr`` with ``Accept: image/png`` serves the same
    bytes to every poller of a session; one that :func:`prerender` drew is taken as it is.
    """
    drawn = _prerendered.get((payload, scale))
    return drawn if drawn is not None else draw_png(payload, scale)


def draw_png(payload: str, scale: int = 8) -> bytes:
    """:func:`png_bytes` without the caches (what the drawing process runs)."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    rows = _matrix(payload, QUIET_ZONE)
    size = len(rows)
    image = Image.new("1", (size, size))
    # Mode "1": 0 is black, 1 is white.
    image.putdata([0 if dark else 1 for row in rows for dark in row])
    if scale != 1:
        image = image.resize((size * scale, size * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


@lru_cache(maxsize=_CACHE_SIZE)
def png_data_url(payload: str) -> str:
    """``data:image/png;base64,…`` of :func:`png_bytes`, as sent in the ``qr`` event's ``qr_data``.

    Built lazily and cached: every subscriber of a session receives the same string object.
    """
    return "data:image/png;base64," + base64.b64encode(png_bytes(payload)).decode("ascii")


_prerendered: OrderedDict[tuple[str, int], bytes] = OrderedDict()
"""PNGs drawn by :func:`prerender`, newest last (``png_bytes`` takes them from here)."""
_drawing: concurrent.futures.Executor | None = None


def _drawer() -> concurrent.futures.Executor:
    """One process that draws QR codes, started on first use; a thread where processes cannot
    be started. A thread shares the GIL with the event loop, a process does not."""
    global _drawing
    if _drawing is None:
        try:
            _drawing = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_detach, initargs=(os.getpid(),),
            )
        except (OSError, NotImplementedError):  # pragma: no cover - no processes here
            _drawing = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="watui-qr")
    return _drawing


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


async def prerender(payload: str) -> None:
    """Draw ``payload``'s PNG in another process, into the cache :func:`png_bytes` reads.

    Finding the best mask and encoding the PNG take tens of milliseconds of pure Python: on the
    event loop that stalls every stream and request at once (it set the tail of SSE fan-out
    latency), and in a thread it still holds the GIL the loop needs. The manager calls this when
    the engine reports a code, before the ``qr`` event is made, so whoever asks afterwards gets
    the drawn PNG at once. A payload too long for any QR code is left for the callers to report.
    """
    key = (payload, 8)
    if key in _prerendered:
        return
    try:
        png = await asyncio.get_running_loop().run_in_executor(_drawer(), draw_png, payload, 8)
    except ValueError:
        return
    except concurrent.futures.process.BrokenProcessPool:  # the drawing process died: next time anew
        global _drawing
        _drawing = None
        return
    _prerendered[key] = png
    while len(_prerendered) > _CACHE_SIZE:
        _prerendered.popitem(last=False)
