"""Keep the sessions running after the console quits: hand the data dir to a background server.

The console's engine lives in its own process, so quitting it takes every linked phone
offline. "Keep running" (:class:`~watui.screens.quit.QuitScreen`) does what an SSH admin
would do with tmux, without tmux: once the console has closed its manager (sessions parked,
store flushed, the data dir's lock given back), it starts ``watui serve`` on the same data dir
and engine, detached (a session of its own, so a terminal that closes does not take it along;
its log goes to the data dir's ``watui.log``), on a loopback port the OS picks. The sessions
reconnect there. The console waits until that server holds the data dir's lock and answers
``/v1/health``, then says where it is; the next ``watui`` on the data dir offers to attach to
it (:func:`watui.console.attach.run_console_or_attach`).

The server runs as a command, ``python -m watui serve``: the console never imports the server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from watui.config import Settings, default_data_dir
from watui.stores.datadir import read_holder

READY_TIMEOUT = 30.0
"""Seconds the background server gets to lock the data dir and answer its health check."""


class HandOffFailed(Exception):
    """The background server did not come up: a sentence for the user."""


@dataclass(frozen=True, slots=True)
class BackgroundServer:
    """The ``watui serve`` that took the data dir over."""

    pid: int
    url: str


def serve_command(settings: Settings, data_dir: Path) -> list[str]:
    """``watui serve`` on the console's data dir and engine, on a loopback port the OS picks.
    Settings from ``WATUI_*`` reach it through the environment, which it inherits."""
    command = [
        sys.executable, "-m", "watui", "serve", "--host", "127.0.0.1", "--port", "0",
        "--engine", settings.engine, "--data-dir", str(data_dir), "--log-format", settings.log_format,
    ]
    if settings.engine_isolation is not None:
        command += ["--engine-isolation", settings.engine_isolation]
    return command


def start_server(settings: Settings) -> subprocess.Popen[bytes]:
    """Start the server, detached from this process and its terminal. Its log lines go to the
    data dir's ``watui.log``; its standard output (where a first start prints the new admin
    key, which is in ``admin.key`` anyway) goes nowhere, so no secret lands in the log."""
    data_dir = settings.data_dir.resolve()
    log_fd = os.open(data_dir / "watui.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(
            serve_command(settings, data_dir), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=log_fd, start_new_session=True, close_fds=True,
        )
    finally:
        os.close(log_fd)


async def keep_running(settings: Settings, *, interrupted: asyncio.Event | None = None,
                       timeout: float = READY_TIMEOUT) -> BackgroundServer | None:
    """Start the background server and wait until it holds the data dir and answers.

    Returns ``None`` if ``interrupted`` is set first (the console got SIGHUP or SIGTERM while
    waiting: the server comes up on its own). Raises :class:`HandOffFailed` if the server exits
    or does not answer within ``timeout`` seconds (it is stopped then; the sessions stay
    parked in the store for the next start).
    """
    data_dir = settings.data_dir.resolve()
    proc = start_server(settings)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    log_path = data_dir / "watui.log"
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                raise HandOffFailed(f"the background server exited (status {proc.returncode}); see {log_path}")
            holder = read_holder(data_dir)
            if holder is not None and holder.pid == proc.pid and holder.url:
                try:
                    answer = await client.get(f"{holder.url}/v1/health")
                except httpx.HTTPError:
                    answer = None
                if answer is not None and answer.status_code == 200:
                    return BackgroundServer(pid=proc.pid, url=holder.url)
            if loop.time() > deadline:
                proc.terminate()
                raise HandOffFailed(f"the background server did not answer within {timeout:.0f} s; "
                                    f"see {log_path}")
            if interrupted is not None:
                try:
                    await asyncio.wait_for(interrupted.wait(), 0.1)
                except TimeoutError:
                    continue
                return None
            await asyncio.sleep(0.1)


def come_back_command(settings: Settings, *, demo: bool = False) -> str:
    """The command that brings this console back (it offers to attach to the server)."""
    command = "watui --demo" if demo else "watui"
    if demo or settings.data_dir.resolve() != default_data_dir().resolve():
        command += f" --data-dir {settings.data_dir.resolve()}"
    return command


def describe(server: BackgroundServer, settings: Settings, sessions: int, *, demo: bool = False) -> list[str]:
    """What to tell the user once the server answers."""
    them = "it" if sessions == 1 else "them"
    return [
        f"watui: {sessions} connected session{'s' if sessions != 1 else ''} keep{'s' if sessions == 1 else ''} "
        f"running in the background: watui serve (pid {server.pid}) at {server.url}",
        f"  Come back to {them}:  {come_back_command(settings, demo=demo)}   (it offers to attach to that server)",
        f"  Stop the server:   kill {server.pid}   (the sessions resume on the next start)",
        f"  Its log:           {settings.data_dir.resolve() / 'watui.log'}",
    ]
