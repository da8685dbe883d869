"""Screens of the Textual console: main table, QR, pairing code, modals, help."""
