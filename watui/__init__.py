"""watui: a console and headless server for many WhatsApp linked-device sessions."""

__version__ = "0.1.0"
