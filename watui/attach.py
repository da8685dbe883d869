"""``watui attach URL``: the console driving a running ``watui serve`` over HTTP and SSE.

The console is the same app; only its service differs (a :class:`watui.remote.RemoteService`
instead of an in-process manager), plus a header line that names the server and says whether
the link is up. Quitting the console leaves the server and its sessions running.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import httpx

from watui.errors import WatuiError

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class AttachError(Exception):
    """Cannot attach: a sentence for the user, printed instead of a console."""


def normalize_url(url: str) -> str:
    """``localhost:8080`` → ``http://localhost:8080``; a path or query is refused."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise AttachError(f"Not a server URL: {url!r} ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise AttachError(f"Not a server URL: {url!r} (expected http://HOST:PORT)")
    if parsed.path not in ("", "/") or parsed.query:
        raise AttachError(f"Give the server's address without a path: {url!r} (e.g. http://127.0.0.1:8080)")
    return str(parsed.copy_with(path="/")).rstrip("/")


def is_local(url: str) -> bool:
    host = httpx.URL(url).host
    return host in LOCAL_HOSTS or host.startswith("127.")


def resolve_key(url: str, key: str | None, data_dir: Path) -> str:
    """The key to use: the one given, else (for a server on this machine) the data dir's
    admin key, which ``watui serve`` wrote there on its first start."""
    if key:
        return key.strip()
    from watui.server.auth import ADMIN_KEY_FILE

    path = data_dir / ADMIN_KEY_FILE
    if is_local(url):
        with contextlib.suppress(OSError):
            secret = path.read_text().strip()
            if secret:
                return secret
        raise AttachError(f"No API key: pass --key KEY or set WATUI_API_KEY (there is no readable {path}).")
    raise AttachError("No API key: pass --key KEY or set WATUI_API_KEY.")


def run_attach(url: str, key: str, log_dir: Path) -> None:
    """Connect (refusing at once, with the reason, when the server or the key is wrong),
    then run the console until ``q``, SIGHUP or SIGTERM."""
    asyncio.run(_run_attach(url, key, log_dir))


async def _run_attach(url: str, key: str, log_dir: Path) -> None:
    from watui.app import WatuiApp, _log_to_file
    from watui.remote import RemoteService

    _log_to_file(log_dir)
    try:
        service = await RemoteService.open(url, key)
    except WatuiError as exc:
        raise AttachError(f"Cannot attach to {url}: {exc.message}") from None
    app = WatuiApp(service=service, link=service.link, freeze_heap=True)
    app.sub_title = url
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGHUP, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, app.exit)
    try:
        await app.run_async()
    finally:
        for signum in (signal.SIGHUP, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        await service.aclose()
