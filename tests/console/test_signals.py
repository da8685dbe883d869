"""``watui --demo`` in a real pseudo-terminal: it exits cleanly on SIGHUP (the SSH connection
dropped) and on ctrl+c, and the sessions keep their state in the store."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import sqlite3
import struct
import sys
import termios
import time
from pathlib import Path

import pytest

from watui.machine import RUNNING

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pty")


def stored_sessions(db: Path) -> list[dict[str, object]]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return [json.loads(doc) for (doc,) in conn.execute("SELECT doc FROM sessions")]
    except sqlite3.Error:
        return []


def spawn_console(data_dir: Path) -> tuple[int, int]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes watui on the pty, as over SSH
        env = {**os.environ, "TERM": "xterm-256color", "TEXTUAL_ANIMATIONS": "none"}
        os.execve(sys.executable, [sys.executable, "-m", "watui", "--demo", "--data-dir", str(data_dir)], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    return pid, fd


def drain(fd: int, seconds: float) -> bytes:
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    return out


def wait_exit(pid: int, fd: int | None, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fd is not None:
            drain(fd, 0.05)  # keep the pty from filling up while the app shuts down
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("watui did not exit")


def wait_seeded(db: Path, fd: int, timeout: float = 30.0) -> None:
    """Until the demo has linked its phones (read through SQLite's WAL, the app keeps running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        drain(fd, 0.1)
        sessions = stored_sessions(db)
        if len(sessions) == 7 and sum(s["status"] == "connected" for s in sessions) >= 3:
            return
    raise AssertionError(f"the demo did not seed its sessions: {stored_sessions(db)}")


@pytest.mark.parametrize("how", ["sighup", "hangup", "ctrl_c"])
def test_console_exits_cleanly_and_parks_sessions(tmp_path: Path, how: str) -> None:
    data_dir = tmp_path / "demo"
    pid, fd = spawn_console(data_dir)
    try:
        wait_seeded(data_dir / "watui.db", fd)
        if how == "sighup":
            os.kill(pid, signal.SIGHUP)
        elif how == "hangup":  # the terminal itself goes away, as when SSH drops
            os.close(fd)
            fd = -1
        else:
            os.write(fd, b"\x03")
        code = wait_exit(pid, fd if fd >= 0 else None, timeout=20)
    finally:
        if fd >= 0:
            os.close(fd)
    assert code == 0
    sessions = {s["name"]: s for s in stored_sessions(data_dir / "watui.db")}
    assert len(sessions) == 7
    assert not [n for n, s in sessions.items() if s["status"] in {str(r) for r in RUNNING}]
    # Linked phones were parked by the shutdown, ready to resume on the next start.
    for name in ("sales-desk", "support", "billing"):
        assert sessions[name]["status"] == "disconnected", sessions[name]
        assert sessions[name]["reason"] == "shutdown"
        assert sessions[name]["linked"] and sessions[name]["autostart"]
    assert sessions["archive"]["status"] == "stopped"
