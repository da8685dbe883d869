"""Reading a drawn QR code back as a phone camera would (zxing), for the tests of the PNGs the
server, the webhooks and the flows hand out."""

from __future__ import annotations

import io

import zxingcpp
from PIL import Image


def scan_png(png: bytes) -> str:
    """The text of the one QR code in the image. Only QR codes are looked for: zxing may also
    see a one-dimensional barcode in a QR code's modules now and then, which no phone offers."""
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(results) == 1, f"exactly one QR code in the image, found {len(results)}"
    return str(results[0].text)
