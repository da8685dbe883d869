"""Headless mode: the session service over HTTP and Server-Sent Events (``watui serve``).

The server is a thin view over :class:`watui.service.SessionService`; it never imports the
console.
"""

from watui.server.app import create_app
from watui.server.runner import BackgroundServer, run_server, serve

__all__ = ["BackgroundServer", "create_app", "run_server", "serve"]
