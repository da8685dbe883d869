"""QR rendering: every output form must scan back to the exact payload.

Decoding uses zxing-cpp with ``try_invert=False`` so a dark/light swap fails the test
instead of being silently corrected by the decoder.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import cairosvg
import pytest
import zxingcpp
from PIL import Image
from rich.console import Console
from rich.style import Style
from rich.text import Text
from terminal_paint import CELL_H, CELL_W, GRID_H, Cell, ink, paint

from watui import qr, qr_drawings
from watui.qr import HALF, QUADRANT, SEXTANT, BlockMode
from watui.widgets.qr_view import block_text, half_block_text

MODULE_PX = 6


def _b64(n: int) -> str:
    return base64.b64encode(os.urandom(n)).decode("ascii")


def whatsapp_payload() -> str:
    """Shaped like whatsmeow's: ref, noise key, identity key, adv secret, platform flag."""
    return f"2@{_b64(66)},{_b64(32)},{_b64(32)},{_b64(32)},1"


PAYLOADS = [
    whatsapp_payload(),
    "https://wa.me/settings/linked_devices#" + whatsapp_payload(),
    "x",
]
PAYLOAD_IDS = ["whatsapp", "wa.me", "x"]
"""Names for the parametrised tests: the payloads are random, and pytest-xdist's workers must
collect the same test ids."""


def decode(image: Image.Image) -> list[str]:
    # QR codes only, as a phone camera offers: zxing may also see a 1D barcode in the modules.
    results = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode, try_invert=False)
    return [r.text for r in results]


def text_cells(text: Text) -> list[list[tuple[str, Style | None]]]:
    """Each line of ``text`` as ``(character, style)`` per cell, styles read from the spans."""
    cells: list[list[tuple[str, Style | None]]] = []
    for line in text.split("\n", allow_blank=True):
        styles: list[Style | None] = [None] * len(line.plain)
        for span in line.spans:
            style = span.style if isinstance(span.style, Style) else Style.parse(span.style)
            for i in range(span.start, span.end):
                assert styles[i] is None, "overlapping spans: the cell's colour is ambiguous"
                styles[i] = style
        cells.append(list(zip(line.plain, styles, strict=True)))
    return cells


def hex_or_none(style: Style | None, attr: str) -> str | None:
    color = getattr(style, attr) if style is not None else None
    if color is None or color.triplet is None:
        return None
    return str(color.triplet.hex)


def draw_text(text: Text) -> tuple[list[list[bool]], Image.Image]:
    """Paint the half-block Text as a terminal would: fg = top pixel, bg = bottom pixel."""
    cells = text_cells(text)
    rows: list[list[bool]] = []
    for line in cells:
        top: list[bool] = []
        bottom: list[bool] = []
        for char, style in line:
            assert char == qr.HALF_BLOCK
            fg, bg = hex_or_none(style, "color"), hex_or_none(style, "bgcolor")
            assert fg in (qr.DARK, qr.LIGHT), f"cell without explicit fg: {style!r}"
            assert bg in (qr.DARK, qr.LIGHT), f"cell without explicit bg: {style!r}"
            top.append(fg == qr.DARK)
            bottom.append(bg == qr.DARK)
        rows += [top, bottom]
    height, width = len(rows), len(rows[0])
    image = Image.new("L", (width, height))
    image.putdata([0 if dark else 255 for row in rows for dark in row])
    image = image.resize((width * MODULE_PX, height * MODULE_PX), Image.Resampling.NEAREST)
    return rows, image


@pytest.mark.parametrize("payload", PAYLOADS, ids=PAYLOAD_IDS)
def test_png_decodes_to_payload(payload: str) -> None:
    image = Image.open(io.BytesIO(qr_drawings.png_bytes(payload)))
    assert image.format == "PNG"
    size = len(qr.qr_matrix(payload)) * 8
    assert image.size == (size, size)
    assert decode(image) == [payload]


@pytest.mark.parametrize("payload", PAYLOADS, ids=PAYLOAD_IDS)
def test_half_block_text_decodes_to_payload(payload: str) -> None:
    text = half_block_text(payload)
    matrix = qr.qr_matrix(payload)
    rows, image = draw_text(text)

    # The drawing is exactly the matrix, plus one light padding row (sizes are always odd).
    assert len(matrix) % 2 == 1
    assert rows[: len(matrix)] == matrix
    assert rows[len(matrix) :] == [[False] * len(matrix)]
    assert decode(image) == [payload]


def test_half_block_text_shape_and_spans() -> None:
    payload = PAYLOADS[0]
    text = half_block_text(payload)
    columns, lines = qr.terminal_size(payload)
    plain_lines = text.plain.split("\n")
    assert len(plain_lines) == lines
    assert {len(line) for line in plain_lines} == {columns}
    assert not text.plain.endswith("\n")
    assert text.no_wrap, "a wrapped QR code does not scan"

    # Runs of equal cells share one span; anything else would be wasted render work.
    for line in text.split("\n"):
        spans = sorted(line.spans, key=lambda s: s.start)
        for left, right in pairwise(spans):
            assert not (left.end == right.start and left.style == right.style)
    runs = sum(1 + sum(a != b for a, b in pairwise(line)) for line in qr.half_block_cells(payload))
    assert len(text.spans) == runs
    # The top quiet zone (4 light rows = 2 lines) is one span per line.
    assert [len(line.spans) for line in text.split("\n")[:2]] == [1, 1]


def test_half_block_cells_match_text() -> None:
    payload = PAYLOADS[1]
    cells = qr.half_block_cells(payload)
    for line_cells, line_text in zip(cells, text_cells(half_block_text(payload)), strict=True):
        for (top, bottom), (_, style) in zip(line_cells, line_text, strict=True):
            assert hex_or_none(style, "color") == (qr.DARK if top else qr.LIGHT)
            assert hex_or_none(style, "bgcolor") == (qr.DARK if bottom else qr.LIGHT)


def sub_blocks(pattern: int, mode: BlockMode) -> frozenset[tuple[int, int]]:
    """The 2×6 sub-blocks of a cell (``terminal_paint``'s grid) that ``pattern``'s dark modules
    cover: bit ``i`` is module ``i`` of the cell in reading order."""
    tall = GRID_H // mode.down
    covered = set()
    for i in range(mode.across * mode.down):
        if pattern >> i & 1:
            x, y = i % mode.across, i // mode.across
            covered |= {(x, y * tall + dy) for dy in range(tall)}
    return frozenset(covered)


@pytest.mark.parametrize("mode", [QUADRANT, SEXTANT], ids=["quadrants", "sextants"])
def test_every_pattern_has_the_glyph_that_inks_exactly_its_dark_modules(mode: BlockMode) -> None:
    """All 16 quadrant and 64 sextant patterns, against what Unicode names each character."""
    patterns = 2 ** (mode.across * mode.down)
    assert len(mode.glyphs) == patterns
    for pattern in range(patterns):
        glyph = mode.glyphs[pattern]
        assert ink(glyph) == sub_blocks(pattern, mode), (pattern, glyph, f"U+{ord(glyph):04X}")


def test_the_glyph_tables_use_the_block_characters() -> None:
    assert qr.QUADRANT_GLYPHS == " ▘▝▀▖▌▞▛▗▚▐▜▄▙▟█"
    sextants = qr.SEXTANT_GLYPHS
    assert (sextants[0], sextants[0b010101], sextants[0b101010], sextants[0b111111]) == (" ", "▌", "▐", "█")
    assert sorted(c for c in sextants if ord(c) >= 0x1FB00) == [chr(c) for c in range(0x1FB00, 0x1FB3C)]
    assert (sextants[1], sextants[0b111110]) == ("\U0001FB00", "\U0001FB3B")


@pytest.mark.parametrize("mode", [QUADRANT, SEXTANT], ids=["quadrants", "sextants"])
def test_blocks_draws_every_pattern_where_it_belongs(mode: BlockMode) -> None:
    """A matrix with every pattern, one per cell, drawn and painted back to modules."""
    patterns = range(2 ** (mode.across * mode.down))
    rows = [[False] * (mode.across * len(patterns)) for _ in range(mode.down)]
    for cell, pattern in enumerate(patterns):
        for i in range(mode.across * mode.down):
            rows[i // mode.across][cell * mode.across + i % mode.across] = bool(pattern >> i & 1)
    lines = qr.blocks(rows, mode)
    assert len(lines) == 1 and len(lines[0]) == len(patterns)
    assert painted_modules([[Cell(c, qr.DARK, qr.LIGHT) for c in lines[0]]], mode) == rows


def painted_modules(cells: list[list[Cell]], mode: BlockMode) -> list[list[bool]]:
    """Paint ``cells`` as a terminal does and read each module back from its middle pixel."""
    image = paint(cells)
    width, height = image.size
    step_x, step_y = CELL_W // mode.across, CELL_H // mode.down
    return [[image.getpixel((x + step_x // 2, y + step_y // 2)) == 0 for x in range(0, width, step_x)]
            for y in range(0, height, step_y)]


def styled_cells(text: Text) -> list[list[Cell]]:
    """A Text's cells with the colours its spans give them (None where a span gives none)."""
    return [[Cell(char, hex_or_none(style, "color"), hex_or_none(style, "bgcolor")) for char, style in line]
            for line in text_cells(text)]


@pytest.mark.parametrize("mode", [QUADRANT, SEXTANT], ids=["quadrants", "sextants"])
@pytest.mark.parametrize("payload", PAYLOADS, ids=PAYLOAD_IDS)
def test_block_text_decodes_to_payload(payload: str, mode: BlockMode) -> None:
    text = block_text(payload, mode)
    cells = styled_cells(text)
    assert {(cell.fg, cell.bg) for line in cells for cell in line} == {(qr.DARK, qr.LIGHT)}, "ink on paper"
    matrix = qr.qr_matrix(payload)
    size = len(matrix)
    modules = painted_modules(cells, mode)
    # Exactly the matrix, padded with light modules to whole cells (right and bottom only).
    assert [row[:size] for row in modules[:size]] == matrix
    assert not any(any(row[size:]) for row in modules) and not any(any(row) for row in modules[size:])
    columns, lines = qr.terminal_size(payload, mode)
    assert (len(modules[0]), len(modules)) == (columns * mode.across, lines * mode.down)
    assert decode(paint(cells)) == [payload]


def test_block_text_is_one_span_a_line_and_cannot_be_poisoned() -> None:
    payload = PAYLOADS[0]
    text = block_text(payload, SEXTANT)
    assert text.no_wrap, "a wrapped QR code does not scan"
    assert text.plain.split("\n") == list(qr.block_lines(payload, SEXTANT))
    assert len(text.spans) == len(qr.block_lines(payload, SEXTANT))
    text.stylize("bold")
    assert all("bold" not in str(span.style) for span in block_text(payload, SEXTANT).spans)
    assert block_text(payload).plain == half_block_text(payload).plain, "half blocks are the default"
    assert block_text(payload, HALF).spans == half_block_text(payload).spans


def test_half_blocks_have_no_ink_glyphs() -> None:
    with pytest.raises(ValueError, match="two colours"):
        qr.block_lines("x", HALF)


def test_terminal_size_realistic_payload() -> None:
    # A ~230-character pairing payload at level L is a version 9 code (53 modules).
    columns, lines = qr.terminal_size(PAYLOADS[0])
    assert (columns, lines) == (53 + 8, (53 + 8 + 1) // 2)
    assert qr.terminal_size("x") == (21 + 8, (21 + 8 + 1) // 2)
    # Quadrants halve the columns; sextants also take a third of the rows a line.
    assert qr.terminal_size(PAYLOADS[0], QUADRANT) == (31, 31)
    assert qr.terminal_size(PAYLOADS[0], SEXTANT) == (31, 21)
    # WhatsApp's own (version 10, 57 modules): 33×22 cells in sextants.
    assert qr.terminal_size("x" * 250, SEXTANT) == (33, 22)
    assert [qr.terminal_size("x" * 250, mode) for mode in qr.BLOCK_MODES] == [(65, 33), (33, 33), (33, 22)]


@pytest.mark.parametrize("payload", PAYLOADS, ids=PAYLOAD_IDS)
def test_quiet_zone_is_light(payload: str) -> None:
    matrix = qr.qr_matrix(payload)
    q = qr.QUIET_ZONE
    assert q == 4
    size = len(matrix)
    assert all(len(row) == size for row in matrix)
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if x < q or y < q or x >= size - q or y >= size - q:
                assert not dark, (x, y)
    # The finder pattern starts right inside the quiet zone.
    assert matrix[q][q] and matrix[q][size - q - 1] and matrix[size - q - 1][q]

    # And the PNG keeps it: 4 modules of white on each side.
    scale = 3
    image = Image.open(io.BytesIO(qr_drawings.png_bytes(payload, scale=scale))).convert("L")
    border = q * scale
    width = image.width
    pixels = image.load()
    assert pixels is not None
    for i in range(width):
        for j in range(border):
            for x, y in ((i, j), (j, i), (i, width - 1 - j), (width - 1 - j, i)):
                assert pixels[x, y] == 255, (x, y)
    assert pixels[border, border] == 0


def test_quiet_zone_parameter() -> None:
    assert len(qr.qr_matrix("x", quiet_zone=0)) == 21
    assert len(qr.qr_matrix("x", quiet_zone=2)) == 25
    assert qr.qr_matrix("x", quiet_zone=0)[0][0] is True
    with pytest.raises(ValueError):
        qr.qr_matrix("x", quiet_zone=-1)


def test_data_url_round_trip_and_png_cache() -> None:
    payload = whatsapp_payload()
    png = qr_drawings.png_bytes(payload)
    assert qr_drawings.png_bytes(payload) is png, "drawn once, then remembered"
    assert qr_drawings.drawings.peek(payload) is png
    url = qr.data_url(png)
    assert url.startswith("data:image/png;base64,")
    assert qr.png_of_data_url(url) == png
    assert decode(Image.open(io.BytesIO(png))) == [payload]
    with pytest.raises(ValueError):
        qr.png_of_data_url("data:image/gif;base64,R0lG")


def test_png_is_small_and_one_bit() -> None:
    """Written by hand: 1-bit greyscale, black on white, under a kilobyte or so."""
    payload = whatsapp_payload()
    png = qr.draw_png(payload)
    image = Image.open(io.BytesIO(png))
    assert image.mode == "1"
    assert len(png) < 1200
    assert qr.draw_png(payload) == png, "the same code draws the same bytes"


def test_cached_results_cannot_be_poisoned() -> None:
    payload = whatsapp_payload()
    matrix = qr.qr_matrix(payload)
    matrix[0][0] = True
    matrix.pop()
    assert qr.qr_matrix(payload)[0][0] is False
    assert len(qr.qr_matrix(payload)) == len(matrix) + 1

    text = half_block_text(payload)
    plain = text.plain
    text.append("oops", "red")
    text.stylize("bold")
    fresh = half_block_text(payload)
    assert fresh.plain == plain
    assert all("bold" not in str(span.style) for span in fresh.spans)


def test_different_payloads_differ() -> None:
    a, b = whatsapp_payload(), whatsapp_payload()
    assert qr.qr_matrix(a) != qr.qr_matrix(b)
    assert qr_drawings.png_bytes(a) != qr_drawings.png_bytes(b)


def test_too_long_payload_and_bad_scale() -> None:
    with pytest.raises(ValueError, match="too long"):
        qr.qr_matrix("x" * 5000)
    with pytest.raises(ValueError):
        qr_drawings.png_bytes("x", scale=0)


@pytest.mark.parametrize("payload", PAYLOADS[:2], ids=PAYLOAD_IDS[:2])
def test_rich_svg_screenshot_scans(payload: str) -> None:
    """What a phone sees: rich renders the Text, cairosvg rasterises it, zxing reads it."""
    columns, _ = qr.terminal_size(payload)
    console = Console(
        record=True,
        width=columns,
        force_terminal=True,
        color_system="truecolor",
        file=io.StringIO(),
    )
    console.print(half_block_text(payload))
    svg = console.export_svg(title="qr")
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=1.5)
    assert isinstance(png, bytes)
    assert decode(Image.open(io.BytesIO(png))) == [payload]


def test_does_not_import_textual() -> None:
    code = "import sys, watui.qr; assert 'textual' not in sys.modules, 'textual imported'"
    subprocess.run([sys.executable, "-c", code], check=True)



# ==================================================================== drawing on demand


class Gate:
    """A drawing the test holds still: every batch is recorded, then waits for ``open``."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.busy = threading.Event()
        self.open = threading.Event()

    def __call__(self, payloads: Sequence[str]) -> list[bytes | None]:
        self.batches.append(list(payloads))
        self.busy.set()
        assert self.open.wait(10), "the test never let the drawing go"
        return qr.draw_pngs(payloads)

    @property
    def drawn(self) -> list[str]:
        return [payload for batch in self.batches for payload in batch]


def held(**options: Any) -> tuple[qr_drawings.Drawings, Gate]:
    """Drawings whose first batch (a code nobody else asks for) is being drawn, held."""
    gate = Gate()
    drawings = qr_drawings.Drawings(draw=gate, batch=1, **options)
    drawings.need("blocker")
    assert gate.busy.wait(10)
    return drawings, gate


def settle(drawings: qr_drawings.Drawings) -> None:
    deadline = time.monotonic() + 10
    while not drawings.idle():
        assert time.monotonic() < deadline, "the queue never emptied"
        time.sleep(0.005)


def test_drawings_draw_newest_first_once_per_code() -> None:
    drawings, gate = held()
    a, b, c, b_again = (drawings.need(p) for p in ("a", "b", "c", "b"))
    assert not any(f.done() for f in (a, b, c, b_again)), "nothing is drawn before its turn"
    gate.open.set()
    assert b.result(10) is b_again.result(10), "two askers of one code share one drawing"
    assert gate.batches == [["blocker"], ["c"], ["b"], ["a"]], "the newest code first"
    assert [decode(Image.open(io.BytesIO(f.result(10)))) for f in (a, c)] == [["a"], ["c"]]  # type: ignore[arg-type]
    assert drawings.drawn == 4
    assert drawings.need("c").result(0) is c.result(0), "remembered: asked again, drawn no more"
    assert drawings.drawn == 4


def test_a_superseded_code_is_never_drawn() -> None:
    drawings, gate = held()
    old = drawings.need("old", session_id="s1", order=10)
    other = drawings.need("other", session_id="s2", order=11)
    drawings.note("s1", 12, "new")  # a newer code of s1 went by (in a stream's batch, say)
    later = drawings.need("older", session_id="s1", order=9)
    assert later.done() and later.result() is None, "known superseded: not even queued"
    gate.open.set()
    assert old.result(10) is None
    assert other.result(10) is not None
    settle(drawings)
    assert gate.drawn == ["blocker", "other"]
    assert drawings.counts["superseded"] == 2 and drawings.drawn == 2


def test_an_expired_code_is_never_drawn() -> None:
    now = [1_000.0]
    drawings, gate = held(clock=lambda: now[0])
    soon = datetime.fromtimestamp(1_005, UTC)
    expiring = drawings.need("expiring", expires_at=soon)
    lasting = drawings.need("lasting", expires_at=(soon + timedelta(seconds=60)).isoformat())
    past = drawings.need("past", expires_at=datetime.fromtimestamp(999, UTC))
    assert past.done() and past.result() is None
    now[0] = 1_006.0  # while they waited, the first one expired
    gate.open.set()
    assert expiring.result(10) is None and lasting.result(10) is not None
    settle(drawings)
    assert gate.drawn == ["blocker", "lasting"]
    assert drawings.counts["expired"] == 2


def test_the_queue_is_bounded_and_gives_up_the_oldest() -> None:
    drawings, gate = held(max_waiting=2)
    first, second, third = (drawings.need(p) for p in ("first", "second", "third"))
    assert first.done() and first.result() is None, "the oldest waiting gives way"
    gate.open.set()
    assert second.result(10) is not None and third.result(10) is not None
    assert drawings.counts["overflow"] == 1 and "first" not in gate.drawn


def test_a_code_nobody_waits_for_any_more_is_not_drawn() -> None:
    drawings, gate = held()
    gone = drawings.need("gone")
    assert gone.cancel()
    gate.open.set()
    settle(drawings)
    assert gate.drawn == ["blocker"] and drawings.counts["abandoned"] == 1


def test_a_payload_no_code_holds_is_reported_not_raised() -> None:
    drawings = qr_drawings.Drawings()
    assert drawings.need("x" * 5000).result(10) is None
    assert drawings.counts["undrawable"] == 1 and drawings.drawn == 0


async def test_awaiting_a_drawing_and_cancelling_the_await() -> None:
    drawings, gate = held()
    waiting = asyncio.ensure_future(drawings.png("cancelled"))
    url = asyncio.ensure_future(drawings.data_url("wanted"))
    await asyncio.sleep(0)  # both asked
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.open.set()
    png = qr.png_of_data_url(await url)  # type: ignore[arg-type]
    assert decode(Image.open(io.BytesIO(png))) == ["wanted"]
    await asyncio.to_thread(settle, drawings)
    assert "cancelled" not in gate.drawn


async def test_use_process_draws_in_another_process() -> None:
    """What the server uses: the drawing never holds the GIL the event loop needs."""
    drawings = qr_drawings.Drawings()
    drawings.use_process()
    payload = whatsapp_payload()
    try:
        png = await drawings.png(payload)
        assert png == qr.draw_png(payload)
        executor = drawings._executor
        assert isinstance(executor, concurrent.futures.ProcessPoolExecutor)
        assert executor.submit(os.getpid).result(10) != os.getpid(), "drawn in another process"
    finally:
        drawings.close()
