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

PNGs are drawn here (:func:`draw_png`, :func:`draw_pngs`); *when* one is drawn, and where, is
:mod:`watui.qr_drawings`: only when someone needs one, since the code's text is the fact and
the picture a view of it that a server with thousands of sessions in QR cannot afford to draw
for nobody.
"""

from __future__ import annotations

import base64
import logging
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
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
    "HalfBlockCell",
    "block_lines",
    "blocks",
    "data_url",
    "draw_png",
    "half_block_cells",
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
