"""``watui --demo`` in a real pseudo-terminal, ended the ways a console ends over SSH.

The connection drops (the terminal hangs up), a supervisor sends SIGTERM, the terminal stalls
and takes nothing more: each time the console ends within 5 s, cleanly. Cleanly means: its
engine hosts and its SQLite writer process have exited, the data dir's lock is free, and a new
process opens the store and finds the sessions parked, ready to resume. A second SIGTERM ends
it at once.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from watui.machine import RUNNING
from watui.stores.datadir import read_holder

from .attach_helpers import background_server
from .console_process import Console, alive, cmdline, eventually, open_again, wait_seeded

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="needs a Linux pty and /proc")

LIMIT = 5.0
"""Seconds a console gets to end after a hang-up or SIGTERM (docs: DESIGN.md, "SIGHUP and
SIGTERM end the console cleanly within 5 s")."""


def start(tmp_path: Path, *, shell: bool = False, hosts: bool = False) -> tuple[Console, Path, list[int]]:
    """The demo, seeded, and the processes it started (its SQLite writer, its engine hosts)."""
    data_dir = tmp_path / "demo"
    args = ["--demo", "--data-dir", str(data_dir)]
    if hosts:
        args += ["--engine-isolation", "process"]
    console = Console(*args, shell=shell)
    try:
        wait_seeded(console, data_dir)
        children = console.children()
        assert any("sqlite_writer_process" in cmdline(p) for p in children), [cmdline(p) for p in children]
        if hosts:
            assert any("watui.engines.hosts" in cmdline(p) for p in children), [cmdline(p) for p in children]
    except BaseException:
        console.kill()
        raise
    return console, data_dir, children


def assert_parked(data_dir: Path) -> None:
    """The lock is free, and a new process opening the store sees the sessions parked."""
    assert read_holder(data_dir) is None, "the data dir is still locked"
    sessions = open_again(data_dir)
    assert len(sessions) == 7
    assert not [n for n, s in sessions.items() if s["status"] in {str(r) for r in RUNNING}]
    for name in ("sales-desk", "support", "billing"):  # linked: parked, to resume on the next start
        assert sessions[name]["status"] == "disconnected", sessions[name]
        assert sessions[name]["reason"] == "shutdown"
        assert sessions[name]["linked"] and sessions[name]["autostart"]
    assert sessions["archive"]["status"] == "stopped"


def assert_no_children_left(children: list[int]) -> None:
    left = [f"{p}: {cmdline(p)}" for p in children if alive(p)]
    assert not left, f"still running after the console ended: {left}"


@pytest.mark.parametrize(
    "how",
    [
        "hang_up",  # the terminal goes away; watui leads its session: SIGHUP and SIGCONT
        "ssh_drop",  # the same under an interactive bash, which passes SIGHUP on to its job
        "sighup",
        "sigterm",
    ],
)
def test_the_console_ends_cleanly_within_5_s(tmp_path: Path, how: str) -> None:
    console, data_dir, children = start(tmp_path, shell=how == "ssh_drop", hosts=how in ("hang_up", "ssh_drop"))
    try:
        since = time.monotonic()
        if how in ("hang_up", "ssh_drop"):
            console.hang_up()
        else:
            os.kill(console.pid, signal.SIGHUP if how == "sighup" else signal.SIGTERM)
        status = console.wait(LIMIT + 5)
        took = time.monotonic() - since
    finally:
        console.kill()
    assert took <= LIMIT, f"the console took {took:.1f} s to end"
    if how != "ssh_drop":  # under bash, bash reaps it
        assert status == 0
    assert_no_children_left(children)
    assert_parked(data_dir)


def stall(console: Console) -> None:
    """Stop reading the terminal and make the console redraw (resizes) until the terminal takes
    nothing more and Textual's event loop is blocked handing it yet another frame."""
    probe = os.open(console.slave_name, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
    sizes = itertools.cycle([(39, 119), (40, 120)])
    try:
        def full() -> bool:
            _, writable, _ = select.select([], [probe], [], 0)
            if writable:
                console.resize(*next(sizes))
            return not writable

        eventually(full, "the terminal to fill up", every=0.02)
    finally:
        os.close(probe)
    blocked = [0]

    def loop_blocked() -> bool:
        # The main thread waits on a lock (Textual's full write queue), not in epoll, and stays.
        blocked[0] = blocked[0] + 1 if main_thread_waits_on_a_lock(console.pid) else 0
        if not blocked[0]:
            console.resize(*next(sizes))
        return blocked[0] >= 10

    eventually(loop_blocked, "the event loop to block on the terminal", every=0.02)


def main_thread_waits_on_a_lock(pid: int) -> bool:
    with open(f"/proc/{pid}/task/{pid}/wchan") as f:
        return "futex" in f.read()


@pytest.mark.parametrize("then", ["sigterm", "hang_up"])
def test_a_console_blocked_on_its_terminal_still_ends(tmp_path: Path, then: str) -> None:
    """A stalled SSH connection: Textual's writes block, and its event loop with them. SIGTERM
    still ends the console cleanly, and so does the connection finally dropping."""
    console, data_dir, children = start(tmp_path)
    try:
        stall(console)
        since = time.monotonic()
        if then == "sigterm":
            os.kill(console.pid, signal.SIGTERM)
        else:
            console.hang_up()
        status = console.wait(LIMIT + 5, read=False)
        took = time.monotonic() - since
    finally:
        console.kill()
    assert took <= LIMIT, f"the console took {took:.1f} s to end"
    assert status == 0
    assert_no_children_left(children)
    assert_parked(data_dir)


def test_a_second_sigterm_ends_it_at_once(tmp_path: Path) -> None:
    """The first SIGTERM starts a clean end, which here cannot finish (the store's writer
    process is stopped); the second ends the process there and then. Its helpers go with it
    (they end when its pipes close), and so does the lock."""
    console, data_dir, children = start(tmp_path)
    writer = next(p for p in children if "sqlite_writer_process" in cmdline(p))
    log = data_dir / "watui.log"
    try:
        os.kill(writer, signal.SIGSTOP)
        os.kill(console.pid, signal.SIGTERM)
        eventually(lambda: "ending the console (SIGTERM)" in log.read_text(), "the first SIGTERM to be taken",
                   between=console.read)
        since = time.monotonic()
        os.kill(console.pid, signal.SIGTERM)
        status = console.wait(LIMIT)
        took = time.monotonic() - since
    finally:
        os.kill(writer, signal.SIGCONT)
        console.kill()
    assert status == -signal.SIGTERM, "it ended by the second SIGTERM"
    assert took < 1.0
    eventually(lambda: not [p for p in children if alive(p)], "its helper processes to exit", LIMIT)
    assert read_holder(data_dir) is None
    assert len(open_again(data_dir)) == 7


def test_ctrl_c_asks_first_then_quits(tmp_path: Path) -> None:
    """ctrl+c is ``q``: with phones connected it asks first, and ctrl+c on the question quits."""
    console, data_dir, children = start(tmp_path)
    try:
        console.type(b"\x03")
        console.read_until(b"quitting disconnects them")
        console.type(b"\x03")
        status = console.wait(20)
    finally:
        console.kill()
    assert status == 0
    assert_no_children_left(children)
    assert_parked(data_dir)


def test_an_attached_console_ends_on_a_hang_up_and_the_server_keeps_going(tmp_path: Path) -> None:
    """``watui attach`` has a terminal too: it ends as quickly, and its server is not touched."""
    server = background_server(tmp_path / "data")
    try:
        with httpx.Client(base_url=server.base_url + "/v1", timeout=10,
                          headers={"Authorization": f"Bearer {server.admin_key}"}) as api:
            created = api.post("/sessions", json={"name": "kept-by-server"}).json()["session_id"]

            def status() -> str:
                return str(api.get(f"/sessions/{created}").json()["status"])

            eventually(lambda: status() == "qr_ready", "its QR code")
            api.post(f"/sessions/{created}/simulate", json={"action": "scan"})
            eventually(lambda: status() == "connected", "the phone to link")
            console = Console("attach", server.base_url, "--data-dir", str(tmp_path / "data"))
            try:
                console.read_until(b"kept-by-server")
                since = time.monotonic()
                console.hang_up()
                code = console.wait(LIMIT + 5)
                took = time.monotonic() - since
            finally:
                console.kill()
            assert took <= LIMIT, f"the console took {took:.1f} s to end"
            assert code == 0
            assert status() == "connected"
    finally:
        server.stop()
