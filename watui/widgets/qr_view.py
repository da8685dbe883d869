"""The QR code drawn with half blocks: two modules per terminal cell, black on white."""

from __future__ import annotations

from textual.widgets import Static

from watui import qr


class QrView(Static):
    """Shows one QR payload; ``show`` swaps the code in place when it rotates."""

    DEFAULT_CSS = """
    QrView { width: auto; height: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.payload: str | None = None

    def show(self, payload: str | None) -> None:
        if payload == self.payload:
            return
        self.payload = payload
        self.update(qr.half_block_text(payload) if payload else "")

    @staticmethod
    def size_needed(payload: str) -> tuple[int, int]:
        """``(columns, lines)`` the code needs, quiet zone included."""
        return qr.terminal_size(payload)
