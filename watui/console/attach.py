"""``watui attach URL``: the console driving a running ``watui serve`` over HTTP and SSE.

The console is the same app; only its service differs (a :class:`watui.remote.RemoteService`
instead of an in-process manager), plus a header line that names the server and says whether
the link is up. Quitting the console leaves the server and its sessions running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import httpx

from watui.config import Settings
from watui.errors import WatuiError

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"})
"""Hosts that are this machine (the last two: a server listening on every address)."""


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
    from watui.stores.datadir import ADMIN_KEY_FILE

    path = data_dir / ADMIN_KEY_FILE
    if is_local(url):
        with contextlib.suppress(OSError):
            secret = path.read_text().strip()
            if secret:
                return secret
        raise AttachError(f"No API key: pass --key KEY or set WATUI_API_KEY (there is no readable {path}).")
    raise AttachError("No API key: pass --key KEY or set WATUI_API_KEY.")


def run_attach(url: str, key: str, settings: Settings) -> None:
    """Connect (refusing at once, with the reason, when the server or the key is wrong),
    then run the console until ``q``, SIGHUP or SIGTERM. Logs go to the data dir's
    ``watui.log``, as the console's do."""
    asyncio.run(_run_attach(url, key, settings))


async def _run_attach(url: str, key: str, settings: Settings) -> None:
    from watui.app import WatuiApp
    from watui.console.config import default_config_path
    from watui.console.terminal import log_to_file, on_hangup_signals
    from watui.remote import RemoteService

    log_to_file(settings)
    try:
        service = await RemoteService.open(url, key)
    except WatuiError as exc:
        raise AttachError(f"Cannot attach to {url}: {exc.message}") from None
    # The same key bindings and theme as the local console (watui paths shows the file).
    app = WatuiApp(service=service, link=service.link, freeze_heap=True, config_path=default_config_path())
    app.sub_title = url
    try:
        with on_hangup_signals(app.exit):
            await app.run_async()
    finally:
        await service.aclose()


def run_console_or_attach(settings: Settings, demo: bool) -> None:
    """``watui``: the console over its own engine; if a running server holds the data dir,
    do not fight it: say so, and offer to attach to that server instead.

    In a terminal the answer is asked (yes by default); without one (a script, a pipe) the
    command says how to attach and exits with status 2, like any locked data dir.
    """
    import click

    from watui.console.run import run_console
    from watui.stores.datadir import DataDirLocked

    try:
        run_console(settings, demo=demo)
    except DataDirLocked as exc:
        url = exc.holder.url
        if url is None:  # another console, not a server: nothing to attach to
            raise
        if not _interactive():
            click.echo(f"watui: {exc}; to drive it from here: watui attach {url}", err=True)
            raise SystemExit(2) from None
        click.echo(f"watui: {exc}", err=True)
        if not click.confirm(f"Attach to the server at {url} instead?", default=True):
            click.echo(f"To drive it from here: watui attach {url}", err=True)
            raise SystemExit(2) from None
        # The server runs from this very data dir, so its admin key is ours to read.
        key = os.environ.get("WATUI_API_KEY") or _admin_key(settings.data_dir)
        if key is None:
            raise AttachError(f"No API key: pass one in WATUI_API_KEY to attach to {url}.") from None
        run_attach(normalize_url(url), key, settings)


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _admin_key(data_dir: Path) -> str | None:
    from watui.stores.datadir import ADMIN_KEY_FILE

    try:
        return (data_dir / ADMIN_KEY_FILE).read_text().strip() or None
    except OSError:
        return None
