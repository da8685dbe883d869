"""What a phone camera would see: the QR screen, screenshotted, rasterised and decoded."""

from __future__ import annotations

import io

import cairosvg
import zxingcpp
from PIL import Image

from watui.clock import FakeClock
from watui.screens.qr import QrScreen

from .conftest import AppFactory, spec, sync

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
    return [result.text for result in zxingcpp.read_barcodes(image)]


async def test_qr_screen_decodes_to_the_payload(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        session = await app.service.create_session(spec("camera"))
        await sync(pilot, clock, 0.5)
        app.open_session(session.id)
        await sync(pilot)
        assert isinstance(app.screen, QrScreen)
        payload = (await app.service.get_qr(session.id)).qr_text
        assert decode_screenshot(app.export_screenshot()) == [payload]

        # After a rotation the screen shows, and a camera reads, the new code.
        await sync(pilot, clock, 60.0)
        rotated = (await app.service.get_qr(session.id)).qr_text
        assert rotated != payload
        assert decode_screenshot(app.export_screenshot()) == [rotated]
