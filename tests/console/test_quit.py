"""``q`` with phones connected: quit, keep them running in the background, or cancel.

The question and each answer through Textual's pilot; what it looks like (snapshots at 80×24
and 120×40); and "keep running" for real: ``watui --demo`` in a pseudo-terminal hands its data
dir to a background ``watui serve``, where the phones connect again, and the next ``watui``
offers to attach to it.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.app import App
from textual.widgets import Button

from watui.clock import FakeClock
from watui.machine import Status
from watui.models import Caller
from watui.screens.confirm import ConfirmScreen
from watui.screens.main import MainScreen
from watui.screens.quit import QuitChoice, QuitScreen
from watui.stores.datadir import read_holder

from .conftest import AppFactory, engine_room, link, plain, spec, sync
from .console_process import Console, alive, eventually, open_again, wait_seeded

Pilot = Any
SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])


async def three_connected(pilot: Pilot, clock: FakeClock) -> None:
    for name in ("sales-desk", "support", "billing"):
        await link(pilot, clock, name)
    await pilot.app.service.create_session(spec("archive", start=False))
    await sync(pilot)


IN_PROCESS = pytest.mark.local_only("the question is for an engine in this process; attached, q just leaves")


@IN_PROCESS
@pytest.mark.parametrize(("key", "choice"), [("q", QuitChoice.QUIT), ("k", QuitChoice.KEEP_RUNNING),
                                             ("escape", QuitChoice.CANCEL), ("c", QuitChoice.CANCEL)])
async def test_q_with_phones_connected_asks_first(make_app: AppFactory, clock: FakeClock, key: str,
                                                  choice: QuitChoice) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await three_connected(pilot, clock)
        await pilot.press("q")
        await sync(pilot)
        assert isinstance(app.screen, QuitScreen)
        assert "3 sessions are connected; quitting disconnects them." in plain(app.screen.query_one("#quit-question"))
        await pilot.press(key)
        await sync(pilot)
        if choice is QuitChoice.CANCEL:
            assert isinstance(app.screen, MainScreen)
            assert app.is_running
            connected = [s for s in app.state.sessions.values() if s.status == Status.CONNECTED]
            assert len(connected) == 3, "cancelling changes nothing"
            await pilot.press("q")  # and asks again
            await sync(pilot)
            assert isinstance(app.screen, QuitScreen)
    if choice is not QuitChoice.CANCEL:
        assert app.return_value is choice
        assert app.return_code == 0


@IN_PROCESS
@pytest.mark.parametrize("button", ["quit", "keep-running", "cancel"])
async def test_the_buttons_answer_too(make_app: AppFactory, clock: FakeClock, button: str) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await link(pilot, clock, "sales-desk")
        await pilot.press("q")
        await sync(pilot)
        assert "1 session is connected; quitting disconnects it." in plain(app.screen.query_one("#quit-question"))
        assert app.screen.focused is app.screen.query_one("#cancel", Button), "enter alone changes nothing"
        await pilot.click(f"#{button}")
        await sync(pilot)
        if button == "cancel":
            assert isinstance(app.screen, MainScreen)
    assert app.return_value is (None if button == "cancel" else QuitChoice(button))


@IN_PROCESS
async def test_ctrl_c_on_the_question_quits(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await link(pilot, clock, "sales-desk")
        await pilot.press("ctrl+c")
        await sync(pilot)
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("ctrl+c")
        await sync(pilot)
    assert app.return_value is None and app.return_code == 0


async def test_the_question_says_what_is_still_running() -> None:
    """The screen on its own, in a tiny app: it only asks, and dismisses with the answer."""

    class Asking(App[QuitChoice | None]):
        def on_mount(self) -> None:
            self.push_screen(QuitScreen(2, pending_actions=1), self.exit)

    app = Asking()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "2 sessions are connected" in plain(app.screen.query_one("#quit-question"))
        assert "1 action is still running." in plain(app.screen.query_one("#quit-pending"))
        await pilot.press("k")
        await pilot.pause()
    assert app.return_value is QuitChoice.KEEP_RUNNING


async def test_nothing_connected_quits_at_once(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        await app.service.create_session(spec("waiting"))  # linking, not connected
        await app.service.create_session(spec("archive", start=False))
        await sync(pilot)
        await pilot.press("q")
        await sync(pilot)
        assert not isinstance(app.screen, (QuitScreen, ConfirmScreen))
    assert app.return_code == 0


async def test_q_asks_only_where_quitting_takes_phones_offline(make_app: AppFactory, clock: FakeClock,
                                                                service: str) -> None:
    """In-process, quitting closes the engine: ``q`` asks. Attached (``watui attach``), the
    server keeps the phones: ``q`` just leaves, and the phone stays connected there."""
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        phone = await link(pilot, clock, "sales-desk")
        await pilot.press("q")
        await sync(pilot)
        if service == "local":
            assert isinstance(app.screen, QuitScreen)
            return
        assert not app.is_running
        manager = engine_room(app)
        assert (await manager.service(Caller.local_admin()).get_session(phone.id)).status == Status.CONNECTED
    assert app.return_value is None


# ---------------------------------------------------------------- snapshots


def asked(clock: FakeClock) -> Callable[[Pilot], Awaitable[None]]:
    async def run_before(pilot: Pilot) -> None:
        await three_connected(pilot, clock)
        await pilot.press("q")
        await sync(pilot)

    return run_before


@SIZES
def test_quit_question(snap_compare: Callable[..., bool], make_app: AppFactory, clock: FakeClock,
                       size: tuple[int, int]) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=asked(clock))


# ---------------------------------------------------------------- keep running, for real


URL = re.compile(rb"at (http://127\.0\.0\.1:\d+)")


@pytest.mark.skipif(sys.platform != "linux", reason="needs a Linux pty and /proc")
def test_keep_running_hands_the_phones_to_a_background_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    console = Console("--demo", "--data-dir", str(data_dir))
    server_pid: int | None = None
    try:
        wait_seeded(console, data_dir)
        console.type(b"q")
        console.read_until(b"quitting disconnects them")
        console.type(b"k")
        assert console.wait(60) == 0
        match = URL.search(console.screen)
        assert match, console.screen[-2000:]
        url = match.group(1).decode()
        holder = read_holder(data_dir)
        assert holder is not None and holder.url == url, holder
        server_pid = holder.pid
        assert server_pid is not None and server_pid != console.pid and alive(server_pid)
        assert f"kill {server_pid}".encode() in console.screen
        console.hang_up()  # the SSH connection goes: the server is not in that terminal's session

        key = (data_dir / "admin.key").read_text().strip()
        with httpx.Client(base_url=url + "/v1", headers={"Authorization": f"Bearer {key}"}, timeout=10) as api:
            assert api.get("/health").status_code == 200

            def reconnected() -> bool:
                sessions = {s["name"]: s for s in api.get("/sessions", params={"limit": 100}).json()["sessions"]}
                return all(sessions[n]["status"] == "connected" for n in ("sales-desk", "support", "billing"))

            eventually(reconnected, "the linked phones to connect again in the background server")

        # The next console on the data dir offers to attach; attached, q leaves the server be.
        again = Console("--demo", "--data-dir", str(data_dir))
        try:
            again.read_until(b"Attach to the server at")
            again.type(b"\r")
            again.read_until(b"sales-desk")
            again.type(b"q")
            assert again.wait(30) == 0
        finally:
            again.kill()
        assert alive(server_pid) and read_holder(data_dir) == holder

        os.kill(server_pid, signal.SIGTERM)
        eventually(lambda: read_holder(data_dir) is None and not alive(server_pid), "the server to stop")
        server_pid = None
    finally:
        console.kill()
        if server_pid is not None and alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)
    sessions = open_again(data_dir)
    for name in ("sales-desk", "support", "billing"):
        assert sessions[name]["status"] == "disconnected" and sessions[name]["reason"] == "shutdown", sessions[name]


async def test_a_background_server_that_cannot_start_is_reported(tmp_path: Path) -> None:
    """The hand-off fails plainly (the data dir is held by someone else here): the server
    exited, and the message says where its log is."""
    from watui.config import Settings
    from watui.console.handoff import HandOffFailed, keep_running
    from watui.stores.datadir import DataDirLock

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with DataDirLock.acquire(data_dir), pytest.raises(HandOffFailed, match=r"exited \(status 2\).*watui\.log"):
        await keep_running(Settings(data_dir=data_dir, engine="simulated"), timeout=30)
    assert "in use by another watui process" in (data_dir / "watui.log").read_text()
