"""What a phone camera would see: the QR screen, captured, turned into pixels and decoded.

Two ways to pixels. At 120×40 the code is half blocks, which fonts draw well: the SVG
screenshot is rasterised with a real font. At every size the screen's cells (characters and
colours, as the compositor hands them to the terminal) are painted the way terminals draw
block elements, as geometry (``terminal_paint``); DejaVu Sans Mono, the font installed here,
has no sextants. Either way zxing reads the glyphs on screen, never the matrix behind them.

The simulated engine's payload is shaped like WhatsApp's and makes the same code: version 10,
57 modules, 65 with the quiet zone.
"""

from __future__ import annotations

import io
from typing import Any

import cairosvg
import pytest
import zxingcpp
from PIL import Image
from terminal_paint import paint, screen_cells

from watui import qr
from watui.app import WatuiApp
from watui.clock import FakeClock
from watui.qr import HALF, QUADRANT, SEXTANT, BlockMode
from watui.screens.qr import QrScreen
from watui.widgets.qr_view import QrView

from .conftest import AppFactory, plain, spec, sync

# Rich's SVG export lays cells out 0.61 em wide and asks for Fira Code. cairosvg ignores the
# per-run ``textLength`` that keeps a browser on that grid, so draw with a font installed
# here whose advance is exactly one cell: DejaVu Sans Mono advances 0.602 em.
CELL_WIDTH_EM = 0.61
DEJAVU_ADVANCE_EM = 1233 / 2048


def decode_screenshot(svg: str) -> list[str]:
    size = 20 * CELL_WIDTH_EM / DEJAVU_ADVANCE_EM
    svg = svg.replace("font-family: Fira Code, monospace;", "font-family: DejaVu Sans Mono;")
    svg = svg.replace("font-size: 20px;", f"font-size: {size:.3f}px;")
    image = Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg.encode()))).convert("L")
    return [result.text for result in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def decode_screen(app: WatuiApp) -> list[str]:
    """The screen's cells painted as a terminal draws them, read as a phone would. Inverted
    codes are not tried: light modules must be light on screen, whatever the theme."""
    return [result.text for result in zxingcpp.read_barcodes(
        paint(screen_cells(app)), formats=zxingcpp.BarcodeFormat.QRCode, try_invert=False)]


async def open_qr(app: WatuiApp, pilot: Any, clock: FakeClock) -> tuple[QrScreen, str]:
    await sync(pilot)
    session = await app.service.create_session(spec("camera"))
    await sync(pilot, clock, 0.5)
    app.open_session(session.id)
    await sync(pilot)
    screen = app.screen
    assert isinstance(screen, QrScreen)
    payload = (await app.service.get_qr(session.id)).qr_text
    assert len(qr.qr_matrix(payload)) == 65, "the simulated code is WhatsApp's size"
    return screen, payload


async def test_qr_screen_decodes_to_the_payload(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen, payload = await open_qr(app, pilot, clock)
        assert screen.query_one(QrView).mode == HALF
        assert decode_screenshot(app.export_screenshot()) == [payload]

        # After a rotation the screen shows, and a camera reads, the new code.
        await sync(pilot, clock, 60.0)
        rotated = (await app.service.get_qr(screen.session_id)).qr_text
        assert rotated != payload
        assert decode_screenshot(app.export_screenshot()) == [rotated]


def shown_lines(app: WatuiApp, widget: Any) -> list[str]:
    """The characters on screen inside ``widget``'s region, line by line."""
    region = widget.region
    rows = screen_cells(app)[region.y : region.bottom]
    return ["".join(cell.char for cell in row[region.x : region.right]) for row in rows]


def drawn(payload: str, mode: BlockMode) -> list[str]:
    """The characters of the code in ``mode``, for checking that all of it is on screen."""
    if mode == HALF:
        columns, lines = qr.terminal_size(payload)
        return [qr.HALF_BLOCK * columns] * lines
    return list(qr.block_lines(payload, mode))


# Each size with the grain and layout it gets for WhatsApp's 65-module code: the coarsest
# grain that fits, text above and below before text beside.
SIZES = [
    ((120, 40), HALF, False),  # as before this change
    ((100, 34), HALF, True),
    ((40, 40), QUADRANT, False),
    ((80, 34), QUADRANT, True),
    ((80, 24), SEXTANT, True),  # the size every SSH client opens with
    ((65, 23), SEXTANT, True),  # the smallest, text beside the code
    ((35, 29), SEXTANT, False),  # the narrowest, text above and below (the status wraps)
]


@pytest.mark.parametrize(("size", "mode", "beside"), SIZES, ids=[f"{w}x{h}" for (w, h), _, _ in SIZES])
async def test_the_code_on_screen_scans(make_app: AppFactory, clock: FakeClock, size: tuple[int, int],
                                        mode: BlockMode, beside: bool) -> None:
    app = make_app()
    async with app.run_test(size=size) as pilot:
        screen, payload = await open_qr(app, pilot, clock)
        view = screen.query_one(QrView)
        assert view.display and (view.mode, screen.has_class("-beside")) == (mode, beside)
        assert shown_lines(app, view) == drawn(payload, mode), "the code is cut off or covered"
        assert decode_screen(app) == [payload]


async def test_rotation_at_80x24_scans(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen, payload = await open_qr(app, pilot, clock)
        assert decode_screen(app) == [payload]
        await sync(pilot, clock, 60.0)
        rotated = (await app.service.get_qr(screen.session_id)).qr_text
        assert rotated != payload
        assert decode_screen(app) == [rotated]


async def test_resizing_redraws_in_the_grain_that_fits(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen, payload = await open_qr(app, pilot, clock)
        assert screen.query_one(QrView).mode == SEXTANT
        await pilot.resize_terminal(120, 40)
        await sync(pilot)
        assert screen.query_one(QrView).mode == HALF and not screen.has_class("-beside")
        assert decode_screen(app) == [payload]
        await pilot.resize_terminal(80, 24)
        await sync(pilot)
        assert screen.query_one(QrView).mode == SEXTANT and screen.has_class("-beside")
        assert decode_screen(app) == [payload]


def shown_text(app: WatuiApp, widget: Any) -> str:
    """What the screen shows inside ``widget``'s region, whitespace collapsed."""
    return " ".join(" ".join(shown_lines(app, widget)).split())


# Below the smallest sizes: from a window a little too small down to 40×12.
TOO_SMALL = [(64, 23), (79, 22), (34, 29), (35, 28), (60, 20), (50, 16), (40, 12)]


@pytest.mark.parametrize("size", TOO_SMALL, ids=[f"{w}x{h}" for w, h in TOO_SMALL])
async def test_too_small_says_so_in_full(make_app: AppFactory, clock: FakeClock, size: tuple[int, int]) -> None:
    app = make_app()
    async with app.run_test(size=size) as pilot:
        screen, _ = await open_qr(app, pilot, clock)
        assert not screen.query_one(QrView).display
        message = screen.query_one("#qr-message")
        expected = " ".join(plain(message).split())
        assert expected.startswith("The terminal is too small") and expected.endswith("phone number instead.")
        assert "needs 35×" in expected and "(or 65×23)" in expected and f"this one is {size[0]}×{size[1]}" in expected
        assert shown_text(app, message) == expected, "the message is cut off"
        assert decode_screen(app) == []
