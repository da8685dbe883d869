"""``watui attach URL``: the console driving a running ``watui serve`` over HTTP and SSE.

The console is the same app; only its service differs (a :class:`watui.remote.RemoteService`
instead of an in-process manager), plus a header line that names the server and says whether
the link is up. Quitting the console leaves the server and its sessions running.

The key never needs to be on a command line, where ``ps`` shows it to every user of the
machine: it comes from ``WATUI_API_KEY``, ``--key-file``, the data dir's admin key (for a
server on this machine) or a hidden prompt (:func:`resolve_key`); ``--key`` still works, with
a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import click
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


def resolve_key(
    url: str,
    key: str | None,
    data_dir: Path,
    *,
    key_file: Path | None = None,
    ask: Callable[[str], str | None] | None = None,
) -> str:
    """The key to use, from the first source that has one: ``key_file``; the key given
    (``WATUI_API_KEY``); for a server on this machine, the data dir's admin key, which
    ``watui serve`` wrote there on its first start; then ``ask`` (a hidden prompt, in a
    terminal). Never a key of this machine for another host."""
    if key_file is not None:
        return read_key_file(key_file)
    if key and key.strip():
        return key.strip()
    from watui.stores.datadir import ADMIN_KEY_FILE

    path = data_dir / ADMIN_KEY_FILE
    if is_local(url):
        with contextlib.suppress(OSError):
            secret = path.read_text().strip()
            if secret:
                return secret
    asked = ask(url) if ask is not None else None
    if asked and asked.strip():
        return asked.strip()
    where = f" (there is no readable {path})" if is_local(url) else ""
    raise AttachError(f"No API key{where}: set WATUI_API_KEY or pass --key-file PATH "
                      "(in a terminal, watui asks for it).")


def read_key_file(path: Path) -> str:
    """The key in ``path`` (its first line). A file that others may read is used, with a warning."""
    try:
        text = path.read_text()
        mode = path.stat().st_mode
    except OSError as exc:
        raise AttachError(f"Cannot read the key file {path}: {exc.strerror or exc}") from None
    secret = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not secret:
        raise AttachError(f"The key file {path} is empty.")
    if mode & 0o077:
        click.echo(f"watui: warning: other users of this machine may read the key file {path} "
                   f"(mode {stat.S_IMODE(mode):04o}); make it private: chmod 600 {path}", err=True)
    return secret


def ask_key(url: str) -> str | None:
    """Ask for the key without echoing it, when there is a terminal to ask in."""
    if not sys.stdin.isatty():
        return None
    answer: str = click.prompt(f"API key for {url} (not shown)", hide_input=True, default="",
                               show_default=False, err=True)
    return answer.strip() or None


KEY_ON_COMMAND_LINE = (
    "watui: warning: --key puts the key on the command line, where `ps` shows it to every user of "
    "this machine; set WATUI_API_KEY, use --key-file PATH, or leave it out to be asked."
)


def run_attach(url: str, key: str, settings: Settings) -> None:
    """Connect (refusing at once, with the reason, when the server or the key is wrong),
    then run the console until ``q``, SIGHUP, SIGTERM or SIGINT. Logs go to the data dir's
    ``watui.log``, as the console's do."""
    asyncio.run(_run_attach(url, key, settings))


async def _run_attach(url: str, key: str, settings: Settings) -> None:
    from watui.app import WatuiApp
    from watui.console.config import default_config_path
    from watui.console.terminal import ConsoleTerminal, log_to_file
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
        with ConsoleTerminal(app.exit) as terminal:
            app.driver_class = terminal.driver(app.driver_class)
            await app.run_async()
    finally:
        await service.aclose()


def run_console_or_attach(settings: Settings, demo: bool) -> None:
    """``watui``: the console over its own engine; if a running server holds the data dir,
    do not fight it: say so, and offer to attach to that server instead.

    In a terminal the answer is asked (yes by default); without one (a script, a pipe) the
    command says how to attach and exits with status 2, like any locked data dir.
    """
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
