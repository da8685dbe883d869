"""Attached to a server that cannot be reached, the console shows no stale truth: the header
says the view is as of the moment the link went down, the rows are dimmed with their last
known status marked, and every action is refused with "server unreachable" (not judged on
what the screen still shows). Back, it shows the server's restore like an in-process console.

The server is the real one in the test's loop (``ServedConsole``) on the fake clock, so the
times on screen, and the snapshots, repeat.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from watui.app import WatuiApp
from watui.clock import FakeClock
from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.machine import Status
from watui.models import Caller
from watui.screens.main import MainScreen
from watui.widgets.server_link import ServerLink
from watui.widgets.sessions_table import SessionsTable

from .attach_helpers import AttachedApp, HeldBackoff, ServedConsole, toasts, wait_for
from .conftest import act, find, link, plain, spec, sync

SnapCompare = Callable[..., bool]


def attached(settings: Settings, engine: SimulatedEngine, clock: FakeClock, backoff: HeldBackoff,
             **options: Any) -> AttachedApp:
    served = ServedConsole(settings, engine, clock, Caller.local_admin(), backoff=backoff, **options)
    app = AttachedApp(served, clock=clock, cursor_blink=False, refresh_interval=0.01)
    app.animation_level = "none"
    return app


def row_text(app: WatuiApp, name: str) -> str:
    table = app.screen.query_one(SessionsTable)
    index = table.index_of(find(app, name).id)
    assert index is not None
    return table.render_line(index + 1 - int(table.scroll_offset.y)).text


def stale(app: WatuiApp) -> bool:
    return app.server_link is not None and app.server_link.stale


async def take_the_server_away(app: AttachedApp, backoff: HeldBackoff, pilot: Any) -> None:
    """Stop the server (as SIGTERM would) and keep the console from reconnecting."""
    backoff.hold()
    await app.served.stop_server()
    await wait_for(pilot, lambda: stale(app), "the link is down")
    await sync(pilot)


async def test_an_unreachable_server_marks_the_view_stale_and_refuses_actions(
    settings: Settings, engine: SimulatedEngine, clock: FakeClock
) -> None:
    backoff = HeldBackoff()
    app = attached(settings, engine, clock, backoff)
    async with app.run_test(size=(120, 40)) as pilot:
        await link(pilot, clock, "alpha")
        await app.service.create_session(spec("bravo", start=False))
        await sync(pilot)
        table = app.screen.query_one(SessionsTable)
        header = app.screen.query_one(ServerLink)
        assert "● connected " in row_text(app, "alpha") and not table.stale
        assert "connected" in plain(header) and "data as of" not in plain(header)

        went_down = clock.now()
        await take_the_server_away(app, backoff, pilot)
        line = plain(header)
        assert "unreachable" in line and f"data as of {went_down:%H:%M:%S} UTC" in line
        assert header.has_class("-stale")
        assert table.stale
        assert "● connected?" in row_text(app, "alpha") and "■ stopped?" in row_text(app, "bravo")

        app.go_to_session(find(app, "alpha").id)
        for key in ("s", "x", "r", "d", "X"):
            before = len(toasts(app))
            await pilot.press(key)
            await wait_for(pilot, lambda b=before: len(toasts(app)) > b, f"an answer to {key}")  # type: ignore[misc]
            title, message = toasts(app)[-1]
            assert title == "Server unreachable" and "server unreachable" in message, (key, message)
            assert f"as of {went_down:%H:%M:%S} UTC" in message
            assert isinstance(app.screen, MainScreen), "refused before any question"
        assert not any("already running" in m for _, m in toasts(app))
        app.go_to_session(find(app, "bravo").id)
        await pilot.press("n")  # the form opens; creating is refused, in the form
        form = app.screen
        await pilot.press("enter")
        await wait_for(pilot, lambda: "Server unreachable" in plain(form.query_one("#new-error")),
                       "the form's refusal")
        await pilot.press("escape")

        backoff.release()
        await app.served.start_server()
        await wait_for(pilot, lambda: not stale(app), "the link is back")
        assert "● connected" in plain(header) and not header.has_class("-stale")
        assert not table.stale


async def test_the_servers_restore_shows_after_a_reconnection(
    settings: Settings, engine: SimulatedEngine, clock: FakeClock
) -> None:
    """The server restarts while the console is attached: it restores its sessions, and the
    header says so ("restoring n/m") as an in-process console's does, then stops saying so.
    /v1/health is read again on reconnecting (not only now and then: here, once an hour)."""
    backoff = HeldBackoff()
    app = attached(settings, engine, clock, backoff, health_every=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        for name in ("alpha", "bravo", "charlie"):
            await link(pilot, clock, name)
        topbar = app.screen.query_one("#topbar")
        assert "restoring" not in plain(topbar)

        await take_the_server_away(app, backoff, pilot)
        await app.served.start_server()  # the fake clock stands still: the restore waits
        backoff.release()
        await wait_for(pilot, lambda: not stale(app), "the link is back")
        await wait_for(pilot, lambda: "restoring 0/3" in plain(topbar), "the header shows the restore")

        await clock.advance(1.0)  # the restored sessions connect
        await wait_for(pilot, lambda: "restoring" not in plain(topbar), "the header drops it when done")
        await sync(pilot)
        assert {s.status for s in app.state.sessions.values()} == {Status.CONNECTED}


def stale_scene(clock: FakeClock, backoff: HeldBackoff) -> Callable[[Any], Awaitable[None]]:
    async def run_before(pilot: Any) -> None:
        app: AttachedApp = pilot.app
        sales = await link(pilot, clock, "sales-desk")
        await link(pilot, clock, "support")
        await app.service.simulate(sales.id, act("message", chat="14155550100", text="Is my order ready?"))
        await app.service.create_session(spec("kiosk-lobby"))
        await app.service.create_session(spec("archive", start=False))
        await sync(pilot, clock, 0.5)
        app.go_to_session(sales.id)
        await sync(pilot, clock, 90)
        await take_the_server_away(app, backoff, pilot)

    return run_before


def test_stale_view_small(snap_compare: SnapCompare, settings: Settings, engine: SimulatedEngine,
                          clock: FakeClock) -> None:
    backoff = HeldBackoff()
    app = attached(settings, engine, clock, backoff, shown_url="http://watui.example:8080")
    assert snap_compare(app, terminal_size=(80, 24), run_before=stale_scene(clock, backoff))


def test_stale_view_large(snap_compare: SnapCompare, settings: Settings, engine: SimulatedEngine,
                          clock: FakeClock) -> None:
    backoff = HeldBackoff()
    app = attached(settings, engine, clock, backoff, shown_url="http://watui.example:8080")
    assert snap_compare(app, terminal_size=(120, 40), run_before=stale_scene(clock, backoff))
