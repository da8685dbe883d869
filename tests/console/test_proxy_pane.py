"""The console and a session's proxy and connection details (issue 21), in-process and
attached: the new-session form takes a proxy, the detail pane shows it masked and shows the
linked phone's platform."""

from __future__ import annotations

from watui.clock import FakeClock
from watui.engines.simulated import SimulatedEngine
from watui.models import SessionCreate
from watui.screens.main import MainScreen
from watui.screens.new_session import NewSessionScreen
from watui.widgets.detail_pane import DetailPane
from watui.widgets.sessions_table import SessionsTable

from .conftest import AppFactory, act, find, plain, sync, wait_until

PROXY = "socks5://alice:s3cret-Pw@proxy.example:1080"


async def test_a_proxy_typed_in_the_form_reaches_the_engine_and_shows_masked(
    make_app: AppFactory, clock: FakeClock, engine: SimulatedEngine
) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, NewSessionScreen)
        form.query_one("#new-name").value = "proxied"  # type: ignore[attr-defined]
        form.query_one("#new-proxy").value = "socks4://proxy.example:1080"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        assert app.screen is form  # refused on its field, nothing created
        assert "got scheme 'socks4'" in plain(form.query_one("#new-proxy-error"))
        assert app.state.sessions == {}
        form.query_one("#new-proxy").value = PROXY  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: any(s.name == "proxied" for s in app.state.sessions.values()),
                         "the session is created")
        session = find(app, "proxied")
        await sync(pilot, clock, 0.5)
        assert engine.phone(session.id).options.proxy == PROXY
        await app.service.simulate(session.id, act("scan"))
        await sync(pilot, clock, 1.0)
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "the QR screen closes when linked")
        await wait_until(pilot, lambda: find(app, "proxied").connection is not None, "the connection details")

        # The table marks the sessions that have a proxy of their own, and only those.
        await app.service.create_session(SessionCreate(name="direct", start=False))
        await wait_until(pilot, lambda: any(s.name == "direct" for s in app.state.sessions.values()),
                         "the second session is listed")
        table = app.screen.query_one(SessionsTable)
        rows = {s.name: i for i, s in enumerate(table.rows)}
        lines = {name: "".join(seg.text for seg in table.render_line(i + 1)) for name, i in rows.items()}
        assert "proxied ⇄" in lines["proxied"] and "⇄" not in lines["direct"], lines
        assert "s3cret-Pw" not in "".join(lines.values())

        pane = app.screen.query_one(DetailPane)
        assert pane.session_id == session.id
        settings = plain(pane.query_one("#detail-settings"))
        fields = plain(pane.query_one("#detail-fields"))
        assert "socks5://alice:***@proxy.example:1080" in settings
        assert "· android" in fields
        assert "s3cret-Pw" not in settings + fields
