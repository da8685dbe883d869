"""``watui`` and ``watui --demo``: the console with its engine in this process.

Opens the manager, runs :class:`~watui.app.WatuiApp` over it and closes both cleanly: on
``q``, and on SIGHUP (the SSH connection dropped), SIGTERM or SIGINT, when the sessions are
parked in the store first so the next start resumes them. Those signals are handled by
:class:`~watui.console.terminal.ConsoleTerminal`, so they work even while the terminal is
gone or stalled. If the user chose to keep the connected phones running, the data dir is
handed to a background ``watui serve`` (:mod:`watui.console.handoff`). Logs go to a file in
the data dir, and the Go runtime's own output with them, so nothing tears the screen.
"""

from __future__ import annotations

import asyncio
import logging

from watui.app import WatuiApp
from watui.config import Settings
from watui.console.config import default_config_path
from watui.console.handoff import HandOffFailed, describe, keep_running
from watui.console.terminal import ConsoleTerminal, keep_native_output_off_screen, log_to_file, say
from watui.machine import Status
from watui.manager import SessionManager
from watui.screens.quit import QuitChoice

log = logging.getLogger(__name__)


def run_console(settings: Settings, demo: bool) -> None:
    """``watui`` / ``watui --demo``: open the manager, run the console, close it cleanly.

    SIGHUP (the SSH connection dropped), SIGTERM and SIGINT end the app like ``q`` does; the
    manager then parks running sessions in the store so the next start resumes them.
    """
    asyncio.run(_run_console(settings, demo))


async def _run_console(settings: Settings, demo: bool) -> None:
    log_to_file(settings)
    if settings.engine == "neonize":
        keep_native_output_off_screen(settings.data_dir / "watui.log")
    manager = await SessionManager.open(settings)
    app = WatuiApp(manager, demo=demo, freeze_heap=True, config_path=default_config_path())
    loop = asyncio.get_running_loop()
    endings: set[asyncio.Task[None]] = set()
    interrupted = asyncio.Event()

    def on_end() -> None:
        interrupted.set()
        task = loop.create_task(_end(app, manager))
        endings.add(task)
        task.add_done_callback(endings.discard)

    with ConsoleTerminal(on_end) as terminal:
        app.driver_class = terminal.driver(app.driver_class)
        connected = 0
        try:
            choice = await app.run_async()
            connected = sum(s.status == Status.CONNECTED for s in app.state.sessions.values())
        finally:
            await asyncio.gather(*endings, return_exceptions=True)
            await manager.aclose()
        if choice is QuitChoice.KEEP_RUNNING and not interrupted.is_set():
            await _hand_off(settings, connected, interrupted, demo=demo)
    if demo and terminal.usable:
        say(f"watui demo data is in {settings.data_dir}")


async def _end(app: WatuiApp, manager: SessionManager) -> None:
    """SIGHUP/SIGTERM/SIGINT: park the sessions in the store first, then end the app."""
    try:
        await manager.aclose()
    except Exception:
        log.exception("closing the manager on a signal failed")
    finally:
        app.exit()


async def _hand_off(settings: Settings, connected: int, interrupted: asyncio.Event, *, demo: bool) -> None:
    """"Keep running": the manager is closed (lock released); start the background server."""
    say(f"watui: handing {connected} session{'s' if connected != 1 else ''} to a background server…")
    try:
        server = await keep_running(settings, interrupted=interrupted)
    except HandOffFailed as exc:
        log.error("keeping the sessions running failed: %s", exc)
        say(f"watui: could not keep the sessions running: {exc}.")
        say("The sessions are parked in the store: run watui again to resume them.")
        raise SystemExit(1) from None
    if server is None:  # a signal came while waiting: the server comes up by itself
        return
    log.info("the sessions were handed to watui serve (pid %d) at %s", server.pid, server.url)
    for line in describe(server, settings, connected, demo=demo):
        say(line)
