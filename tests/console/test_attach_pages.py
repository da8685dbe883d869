"""Histories longer than one page of the API, on both services: the log screens (``e``, ``E``,
``M``) and the service calls behind them read everything, in the server's own page sizes
(``watui.service.MAX_PAGE``, ``MAX_EVENT_PAGE``), which the server's routes enforce."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from watui.clock import FakeClock
from watui.config import Settings
from watui.manager import SessionManager
from watui.models import Caller
from watui.screens.log import LogScreen
from watui.server.app import create_app
from watui.service import MAX_EVENT_PAGE, MAX_PAGE
from watui.widgets.log_view import LogView

from .conftest import AppFactory, act, engine_room, link, plain, sync, wait_until
from .keys import toasts

MESSAGES = 2 * MAX_EVENT_PAGE + 30
"""More events and messages than the log screen reads at once (1,000), so more than two pages
of the event log and ten of messages."""


async def chatty(pilot: Any, clock: FakeClock) -> str:
    """A linked session with ``MESSAGES`` messages received (written in the engine room,
    fast): one event each, after the few of its linking."""
    session = await link(pilot, clock, "chatty")
    here = engine_room(pilot.app).service(Caller.local_admin())
    for n in range(MESSAGES):
        await here.simulate(session.id, act("message", chat="14155550100", text=f"message {n:04d}"))
    await sync(pilot)
    return session.id


async def open_log(pilot: Any, key: str) -> LogView:
    app = pilot.app
    await pilot.press(key)
    await wait_until(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.loaded, f"the log ({key})")
    return app.screen.query_one(LogView)


async def test_the_log_screens_read_every_page(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        session_id = await chatty(pilot, clock)
        stored = await engine_room(app).service(Caller.local_admin()).list_events(limit=10_000)
        assert len(stored) > 2 * MAX_EVENT_PAGE

        view = await open_log(pilot, "e")
        assert [line.key for line in view.lines] == [e.id for e in stored if e.session_id == session_id]
        title = plain(app.screen.query_one("#log-title"))
        assert f"{len(view.lines):,} lines" in title
        await pilot.press("escape")

        view = await open_log(pilot, "E")
        assert [line.key for line in view.lines] == [e.id for e in stored]
        await pilot.press("escape")

        view = await open_log(pilot, "M")
        texts = [line.text.plain for line in view.lines]
        assert len(texts) == MESSAGES
        assert "message 0000" in texts[0] and f"message {MESSAGES - 1:04d}" in texts[-1]
        assert not any("refused" in t or "limit" in t for t in toasts(app)), toasts(app)


async def test_reads_of_many_pages_match_the_engine_room(make_app: AppFactory, clock: FakeClock) -> None:
    """The service calls themselves: as many events, messages as asked, from any point."""
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        session_id = await chatty(pilot, clock)
        here = engine_room(app).service(Caller.local_admin())
        service = app.service
        for kwargs in ({"limit": 1200}, {"after_id": 7, "limit": MAX_EVENT_PAGE + 1},
                       {"session_id": session_id, "limit": 10_000}, {"limit": 3}):
            assert await service.list_events(**kwargs) == await here.list_events(**kwargs), kwargs
        for kwargs in ({"limit": 250}, {"limit": 150, "offset": 40}, {"limit": 1000, "offset": MESSAGES - 5}):
            mine = await service.list_messages(session_id, **kwargs)
            assert mine == await here.list_messages(session_id, **kwargs), kwargs
        assert len((await service.list_messages(session_id, limit=250)).messages) == 250


async def test_the_servers_page_limits_are_the_shared_ones(tmp_path: Path) -> None:
    """Every ``limit`` the API takes is capped by one of the shared constants, so a client
    that pages with them is never refused (the attached log screens once were)."""
    manager = await SessionManager.open(Settings(data_dir=tmp_path / "data", engine="simulated"))
    try:
        openapi = create_app(manager).openapi()
    finally:
        await manager.aclose()
    maxima = {
        path: param["schema"].get("maximum")
        for path, methods in openapi["paths"].items() for operation in methods.values()
        for param in operation.get("parameters", []) if param["name"] == "limit"
    }
    assert set(maxima.values()) == {MAX_PAGE, MAX_EVENT_PAGE}, maxima
    assert maxima["/v1/events/log"] == maxima["/v1/sessions/{session_id}/events"] == MAX_EVENT_PAGE
    assert maxima["/v1/sessions/{session_id}/messages"] == maxima["/v1/sessions"] == MAX_PAGE
