"""``watui`` and ``watui --demo``: the console with its engine in this process.

Opens the manager, runs :class:`~watui.app.WatuiApp` over it and closes both cleanly: on
``q``, and on SIGHUP (the SSH connection dropped) or SIGTERM, when the sessions are parked in
the store first so the next start resumes them. Logs go to a file in the data dir, and the
Go runtime's own output with them, so nothing tears the screen.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

from watui.app import WatuiApp
from watui.config import Settings
from watui.console.config import default_config_path
from watui.console.terminal import (
    keep_native_output_off_screen,
    log_to_file,
    on_hangup_signals,
    say,
)
from watui.manager import SessionManager

log = logging.getLogger(__name__)


def run_console(settings: Settings, demo: bool) -> None:
    """``watui`` / ``watui --demo``: open the manager, run the console, close it cleanly.

    SIGHUP (the SSH connection dropped) and SIGTERM end the app like ``q`` does; the manager
    then parks running sessions in the store so the next start resumes them.
    """
    asyncio.run(_run_console(settings, demo))


async def _run_console(settings: Settings, demo: bool) -> None:
    log_to_file(settings)
    if settings.engine == "neonize":
        keep_native_output_off_screen(settings.data_dir / "watui.log")
    manager = await SessionManager.open(settings)
    app = WatuiApp(manager, demo=demo, freeze_heap=True, config_path=default_config_path())
    loop = asyncio.get_running_loop()
    hangups: set[asyncio.Task[None]] = set()

    def on_hangup() -> None:
        task = loop.create_task(_hang_up(app, manager))
        hangups.add(task)
        task.add_done_callback(hangups.discard)

    try:
        with on_hangup_signals(on_hangup):
            await app.run_async()
    finally:
        await manager.aclose()
    if demo:
        say(f"watui demo data is in {settings.data_dir}")


HANGUP_GRACE = 5.0
"""Seconds Textual gets to restore a terminal that is gone before the process just ends."""


async def _hang_up(app: WatuiApp, manager: SessionManager) -> None:
    """SIGHUP/SIGTERM: park the sessions in the store first, then end the app.

    Restoring a terminal whose SSH connection dropped can block in Textual's writer thread
    (the pty is gone), so the sessions are saved before the app is asked to exit, and a
    watchdog ends the process if that exit never completes.
    """
    try:
        await manager.aclose()
    except Exception:
        log.exception("closing the manager on hangup failed")
    finally:
        watchdog = threading.Timer(HANGUP_GRACE, os._exit, args=(0,))
        watchdog.daemon = True
        watchdog.start()
        app.exit()
