"""The terminal a console runs in: hang-ups, and keeping everything but the app off its screen.

Shared by the in-process console (:mod:`watui.console.run`) and ``watui attach``
(:mod:`watui.console.attach`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from watui.config import Settings
from watui.logs import configure_logging
from watui.stores.datadir import DataDirUnusable, make_private


@contextlib.contextmanager
def on_hangup_signals(handler: Callable[[], None]) -> Iterator[None]:
    """Send SIGHUP (the SSH session closed) and SIGTERM to ``handler`` while the console runs,
    so it can shut down cleanly instead of dying mid-write; the handlers go afterwards."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGHUP, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, handler)
    try:
        yield
    finally:
        for signum in (signal.SIGHUP, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)


def log_to_file(settings: Settings) -> None:
    """Library warnings go to a file: anything printed to the terminal would tear the screen."""
    try:
        make_private(settings.data_dir)
        configure_logging(settings.log_format, filename=settings.data_dir / "watui.log")
    except OSError as exc:
        raise DataDirUnusable(f"cannot write to the data dir {settings.data_dir}: {exc.strerror}") from None


def keep_native_output_off_screen(log_path: Path) -> None:
    """neonize's Go runtime prints straight to file descriptors 1 and 2, which would tear
    Textual's screen. Point those descriptors at the log, and hand Python (and so Textual,
    which writes to ``sys.__stderr__`` and sizes the screen from ``sys.__stdout__``) new
    descriptors on the terminal."""
    if not (os.isatty(1) and os.isatty(2)):
        return
    terminal_out, terminal_err = os.dup(1), os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stdout = sys.__stdout__ = os.fdopen(terminal_out, "w", buffering=1)  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = os.fdopen(terminal_err, "w", buffering=1)  # type: ignore[misc]


def say(line: str) -> None:
    """Print after the app ended; the terminal may be gone (a hung-up SSH session)."""
    try:
        print(line, flush=True)
    except OSError:
        # Nothing to tell and nowhere to tell it: keep the interpreter's exit flush quiet too.
        sys.stdout = open(os.devnull, "w")
