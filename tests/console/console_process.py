"""``python -m watui …`` in a real pseudo-terminal, as over SSH: the pty is the process's
controlling terminal, and closing its master side is what an SSH drop does (the kernel sends
SIGHUP and SIGCONT to the session leader; writes fail with EIO, reads return end-of-file).

Also what a test checks afterwards: the process tree (engine hosts, the SQLite writer
process), the data dir's lock, and the store as a new process sees it. Every wait polls
against a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ENV = {"TERM": "xterm-256color", "TEXTUAL_ANIMATIONS": "none", "WATUI_API_KEY": ""}


def eventually(check: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.05,
               between: Callable[[float], None] | None = None) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline.
    ``between(seconds)`` is called between tries (to keep reading a terminal, say)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}")
        if between is not None:
            between(every)
        else:
            select.select([], [], [], every)


class Console:
    """A ``watui`` command on a pseudo-terminal of 120×40 that is its controlling terminal.

    With ``shell=True`` an interactive bash is the session leader and watui runs as its job,
    as in a real SSH login: on a hang-up the kernel signals bash, which passes SIGHUP on.
    """

    def __init__(self, *args: str, shell: bool = False, env: dict[str, str] | None = None,
                 size: tuple[int, int] = (40, 120)) -> None:
        self.master, slave = os.openpty()
        rows, cols = size
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.slave_name = os.ttyname(slave)
        self.screen = b""
        environment = {**os.environ, **ENV, **(env or {})}
        command = [sys.executable, "-m", "watui", *args]
        if shell:
            environment["PS1"] = "$ "
            argv = ["bash", "--norc", "--noprofile", "-i"]
        else:
            argv = command
        self.leader = subprocess.Popen(
            argv, cwd=REPO, stdin=slave, stdout=slave, stderr=slave, env=environment, close_fds=True,
            preexec_fn=_take_terminal,
        )
        os.close(slave)
        if shell:
            self.type(" ".join(_quote(part) for part in command).encode() + b"\n")
            self.pid = eventually(lambda: _child_running(self.leader.pid, "watui"), "watui to start under bash",
                                  between=self.read)
        else:
            self.pid = self.leader.pid

    # ------------------------------------------------------------ the terminal

    def read(self, seconds: float = 0.05) -> None:
        """Read what the console drew (for up to ``seconds``), so its output never backs up."""
        if self.master < 0:
            return
        ready, _, _ = select.select([self.master], [], [], seconds)
        if ready:
            try:
                self.screen += os.read(self.master, 1 << 16)
            except OSError:
                pass

    def read_until(self, text: bytes, timeout: float = 30.0) -> None:
        eventually(lambda: text in self.screen, f"{text!r} on the screen", timeout, between=self.read)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def hang_up(self) -> None:
        """Close the terminal's master side: what sshd does when the connection drops."""
        os.close(self.master)
        self.master = -1

    # ------------------------------------------------------------ the process

    def exited(self) -> int | None:
        """The exit status once the watui process has ended (negative: killed by that signal)."""
        if self.pid == self.leader.pid:
            return self.leader.poll()
        try:
            done, status = os.waitpid(self.pid, os.WNOHANG)  # not our child: only /proc knows
        except ChildProcessError:
            done, status = 0, 0
        if done:
            return os.waitstatus_to_exitcode(status)
        return 0 if not alive(self.pid) else None

    def wait(self, timeout: float, *, read: bool = True) -> int:
        """Wait for the watui process to end, reading the terminal meanwhile (unless ``read``
        is false: a terminal that takes nothing); its status."""
        eventually(lambda: self.exited() is not None, f"watui (pid {self.pid}) to exit", timeout,
                   between=self.read if read else None)
        status = self.exited()
        assert status is not None
        return status

    def kill(self) -> None:
        for pid in {self.pid, self.leader.pid}:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.leader.poll() is None:
            self.leader.wait(10)
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def children(self) -> list[int]:
        return descendants(self.pid)


def _take_terminal() -> None:
    """In the child: a session of its own, with the pty as its controlling terminal."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _quote(part: str) -> str:
    import shlex

    return shlex.quote(part)


# ------------------------------------------------------------ processes, from /proc


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Running (a zombie is not: the container's init may never reap it)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return [p for p in found if alive(p)]


def _child_running(parent: int, word: str) -> int | None:
    for pid in descendants(parent):
        if f"-m {word}" in cmdline(pid):
            return pid
    return None


def cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------ the data dir


def stored_sessions(db: Path) -> list[dict[str, Any]]:
    """The sessions as a reader sees them through SQLite's WAL, while watui may still run."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return [json.loads(doc) for (doc,) in conn.execute("SELECT doc FROM sessions")]
    except sqlite3.Error:
        return []


OPEN_AGAIN = """
import asyncio, json, sys
from pathlib import Path
from watui.config import Settings
from watui.manager import SessionManager
from watui.models import Caller

async def main():
    settings = Settings(data_dir=Path(sys.argv[1]), engine="simulated")
    manager = await SessionManager.open(settings, restore=False)
    try:
        page = await manager.service(Caller.local_admin()).list_sessions(limit=None)
        print(json.dumps([s.model_dump(mode="json") for s in page.sessions]))
    finally:
        await manager.aclose()

asyncio.run(main())
"""


def open_again(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Open the data dir the way watui does (lock, then store) in a new process, without
    restoring anything; its sessions by name. Fails if the lock is still held."""
    done = subprocess.run([sys.executable, "-c", OPEN_AGAIN, str(data_dir)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return {s["name"]: s for s in json.loads(done.stdout.strip().splitlines()[-1])}


def wait_seeded(console: Console, data_dir: Path, timeout: float = 30.0) -> None:
    """Until ``watui --demo`` has made its seven sessions and linked its phones, and the
    console shows them (what a key pressed now acts on)."""
    def seeded() -> bool:
        sessions = stored_sessions(data_dir / "watui.db")
        return len(sessions) == 7 and sum(s["status"] == "connected" for s in sessions) >= 3

    eventually(seeded, "the demo to seed its sessions", timeout, between=console.read)
    console.read_until(b"3 connected", timeout)
