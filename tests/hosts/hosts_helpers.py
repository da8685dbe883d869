"""Helpers for the engine host tests: a manager over real host processes, waiting, counting."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from watui.config import Settings
from watui.engines.hosts import HostedEngine
from watui.engines.spec import EngineSpec
from watui.manager import SessionManager

FAST_PHONE = {"connect_latency": 0.02, "link_latency": 0.02, "seed": "hosts"}
"""The simulated phone, quick: a scan links in tens of milliseconds."""

CLOSED_PROXY = "socks5://127.0.0.1:9"
"""A proxy port nothing listens on: every real neonize dial fails at once, network or not."""


def hosted(engine: str = "simulated", *, options: dict[str, Any] | None = None, **kwargs: Any) -> HostedEngine:
    default = FAST_PHONE if engine == "simulated" else {"proxy": CLOSED_PROXY, "connect_timeout": 20}
    return HostedEngine(EngineSpec(engine, {**default, **(options or {})}), **kwargs)


async def open_manager(data_dir: Path, engine: HostedEngine, **overrides: Any) -> SessionManager:
    settings = Settings(
        data_dir=data_dir, engine=engine.spec.engine, sqlite_synchronous="NORMAL",  # type: ignore[arg-type]
        reconnect_base_delay=0.1, reconnect_max_delay=0.5, **overrides,
    )
    return await SessionManager.open(settings, engine=engine)


async def wait_for(predicate: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 10.0) -> float:
    """Poll until ``predicate`` holds; return the seconds it took."""
    started = time.monotonic()
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie not yet reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def os_threads() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError("no thread count in /proc/self/status")


def children(pid: int) -> list[tuple[int, str, str]]:
    """The child processes of ``pid``: (pid, command, state), zombies (``Z``) included."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(ppid) == pid:
            found.append((int(entry.name), comm, state))
    return found
