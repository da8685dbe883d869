"""Pilot tests: each console flow end to end over a real manager and the simulated engine."""

from __future__ import annotations

import time

from textual.widgets import Input

from watui.clock import FakeClock
from watui.config import Settings
from watui.machine import Status
from watui.models import Caller
from watui.screens.confirm import ConfirmScreen
from watui.screens.details import DetailScreen
from watui.screens.help import HelpScreen
from watui.screens.main import MainScreen
from watui.screens.new_session import NewSessionScreen
from watui.screens.pair_code import PairCodeScreen, PhonePrompt
from watui.screens.qr import QrScreen
from watui.widgets.detail_pane import DetailPane
from watui.widgets.qr_view import QrView
from watui.widgets.sessions_table import SessionsTable

from .conftest import AppFactory, act, find, link, plain, row_names, spec, sync, wait_until


def toasts(app: object) -> list[str]:
    return [n.message for n in app._notifications]  # type: ignore[attr-defined]


async def test_create_qr_scan_connects_and_closes_qr(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        assert isinstance(app.screen, MainScreen)
        await pilot.press("n")
        assert isinstance(app.screen, NewSessionScreen)
        app.screen.query_one("#new-name").value = ""  # type: ignore[attr-defined]
        await pilot.press(*"alpha", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, QrScreen), "the QR screen opens by itself")
        qr_screen = app.screen
        assert isinstance(qr_screen, QrScreen)
        assert qr_screen.query_one(QrView).payload is None  # still initializing
        await sync(pilot, clock, 0.5)
        code = await app.service.get_qr(qr_screen.session_id)
        assert qr_screen.query_one(QrView).payload == code.qr_text
        assert find(app, "alpha").status == Status.QR_READY
        await pilot.press("c")  # DEMO: the phone scans
        await sync(pilot)
        assert find(app, "alpha").status == Status.CONNECTING
        await sync(pilot, clock, 1.0)
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "the QR screen closes when linked")
        assert find(app, "alpha").status == Status.CONNECTED
        assert any("alpha is connected" in t for t in toasts(app))
        table = app.screen.query_one(SessionsTable)
        assert [(s.name, s.status) for s in table.rows] == [("alpha", Status.CONNECTED)]


async def test_stop_start_restart(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        session = await link(pilot, clock, "bravo")
        await pilot.press("x")
        await wait_until(pilot, lambda: find(app, "bravo").status == Status.STOPPED, "stopped")
        assert any("Stopped 'bravo'" in t for t in toasts(app))
        assert app.screen.query_one(SessionsTable).current_id == session.id

        await pilot.press("s")
        await wait_until(pilot, lambda: find(app, "bravo").status == Status.INITIALIZING, "starting")
        await sync(pilot, clock, 0.5)  # stored credentials: reconnects without a QR code
        assert find(app, "bravo").status == Status.CONNECTED

        await pilot.press("r")
        await wait_until(pilot, lambda: find(app, "bravo").status == Status.INITIALIZING, "restarting")
        await sync(pilot, clock, 0.5)
        assert find(app, "bravo").status == Status.CONNECTED
        assert any("Restarted 'bravo'" in t for t in toasts(app))


async def test_refused_action_explains_why(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        await app.service.create_session(spec("charlie", start=False))
        await sync(pilot)
        await pilot.press("x")  # stopping a stopped session
        await wait_until(pilot, lambda: any("Cannot stop" in t for t in toasts(app)), "an error toast")
        assert find(app, "charlie").status == Status.STOPPED


async def test_logout_asks_first_and_cancel_keeps_the_link(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await link(pilot, clock, "delta")
        await pilot.press("l")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await sync(pilot)
        assert isinstance(app.screen, MainScreen)
        assert find(app, "delta").status == Status.CONNECTED

        await pilot.press("l")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(pilot, lambda: find(app, "delta").status == Status.DISCONNECTED, "logged out")
        assert find(app, "delta").reason == "logged_out"
        assert not find(app, "delta").linked


async def test_delete_asks_first(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await link(pilot, clock, "echo")
        await app.service.create_session(spec("foxtrot", start=False))
        await sync(pilot)
        assert row_names(app) == ["echo", "foxtrot"]
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        await sync(pilot)
        assert row_names(app) == ["echo", "foxtrot"]

        await pilot.press("d", "y")
        await wait_until(pilot, lambda: row_names(app) == ["foxtrot"], "echo gone from the table")
        assert len((await app.service.list_sessions()).sessions) == 1
        assert app.screen.query_one(SessionsTable).current_id == find(app, "foxtrot").id


async def test_filter_by_name_phone_and_status(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        linked = await link(pilot, clock, "golf")
        for name in ("hotel", "india"):
            await app.service.create_session(spec(name, start=False))
        await sync(pilot)
        assert row_names(app) == ["golf", "hotel", "india"]

        await pilot.press("slash", *"ind")
        await sync(pilot)
        assert row_names(app) == ["india"]
        await pilot.press("enter")  # keep the filter, back to the table
        assert app.screen.query_one(SessionsTable).has_focus

        await pilot.press("slash", "ctrl+u", *"stopped")
        await sync(pilot)
        assert row_names(app) == ["hotel", "india"]

        box = app.screen.query_one("#filter", Input)
        assert linked.phone_number
        box.value = "+" + linked.phone_number[:6]
        await sync(pilot)
        assert row_names(app) == ["golf"]

        box.value = "zzz"
        await sync(pilot)
        assert row_names(app) == []
        assert "No session matches 'zzz'" in app.screen.query_one(SessionsTable).empty_message

        await pilot.press("escape")  # leaves the box
        await pilot.press("escape")  # clears the filter
        await sync(pilot)
        assert row_names(app) == ["golf", "hotel", "india"]


async def test_limit_reached_stays_in_the_form_and_nothing_is_created(
    make_app: AppFactory, clock: FakeClock, settings: Settings
) -> None:
    limited = settings.model_copy(update={"max_active_sessions_per_owner": 1})
    app = make_app(caller=Caller(owner="alice"), settings_=limited)
    async with app.run_test(size=(120, 40)) as pilot:
        await link(pilot, clock, "juliet")
        await pilot.press("n")
        app.screen.query_one("#new-name").value = ""  # type: ignore[attr-defined]
        form = app.screen
        await pilot.press(*"kilo", "enter")
        await wait_until(pilot, lambda: "limit" in plain(form.query_one("#new-error")), "the refusal in the form")
        assert app.screen is form
        assert form.query_one("#new-name").value == "kilo"  # type: ignore[attr-defined]
        assert [s.name for s in app.state.sessions.values()] == ["juliet"]


async def test_engine_failure_shown_on_qr_screen_then_retry(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        session = await app.service.create_session(spec("lima"))
        await sync(pilot, clock, 0.5)
        await pilot.press("enter")
        assert isinstance(app.screen, QrScreen)
        await app.service.simulate(session.id, act("fail", reason="websocket closed: 503"))
        await sync(pilot)
        qr = app.screen
        assert isinstance(qr, QrScreen)
        assert qr.failure == "websocket closed: 503"
        assert not qr.query_one(QrView).display
        assert "websocket closed: 503" in plain(qr.query_one("#qr-message"))
        assert find(app, "lima").status == Status.FAILED

        await pilot.press("r")  # retry
        await wait_until(pilot, lambda: find(app, "lima").status == Status.INITIALIZING, "started again")
        await sync(pilot, clock, 0.5)
        assert qr.failure is None
        assert qr.query_one(QrView).display
        assert qr.query_one(QrView).payload == (await app.service.get_qr(session.id)).qr_text


async def test_rotation_replaces_the_code_in_place(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        session = await app.service.create_session(spec("mike"))
        await sync(pilot, clock, 0.5)
        await pilot.press("enter")
        qr = app.screen
        assert isinstance(qr, QrScreen)
        view = qr.query_one(QrView)
        first = view.payload
        assert first and qr.generation == 1
        assert "Code 1/6" in plain(qr.query_one("#qr-status"))
        assert "expires in 60s" in plain(qr.query_one("#qr-status"))

        await sync(pilot, clock, 60.0)  # the first code lives 60 s
        assert qr.is_current
        assert qr.query_one(QrView) is view
        assert view.payload not in (None, first)
        assert view.payload == (await app.service.get_qr(session.id)).qr_text
        assert qr.generation == 2
        status_line = plain(qr.query_one("#qr-status"))
        assert "Code 2/6" in status_line and "expires in 20s" in status_line


async def test_qr_screen_too_small_offers_phone(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(60, 20)) as pilot:
        await sync(pilot)
        await app.service.create_session(spec("november"))
        await sync(pilot, clock, 0.5)
        await pilot.press("enter")
        qr = app.screen
        assert isinstance(qr, QrScreen)
        fits, need = qr.fits()
        assert not fits and need[1] > 24
        assert not qr.query_one(QrView).display
        message = plain(qr.query_one("#qr-message"))
        assert f"{need[0]}×{need[1]}" in message and "phone number" in message
        await pilot.press("p")
        assert isinstance(app.screen, PhonePrompt)


async def test_link_by_phone_number(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        session = await app.service.create_session(spec("oscar", start=False))
        await sync(pilot)
        await pilot.press("p")
        assert isinstance(app.screen, PhonePrompt)
        await pilot.press(*"12", "enter")
        assert isinstance(app.screen, PhonePrompt)  # too short: stays, says why
        assert "international format" in plain(app.screen.query_one("#phone-error"))
        await pilot.press("ctrl+u", *"+14155550123", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PairCodeScreen), "the pairing code screen")
        await sync(pilot, clock, 0.5)
        pair = app.screen
        assert isinstance(pair, PairCodeScreen)
        await wait_until(pilot, lambda: pair.code is not None, "the code")
        assert pair.code is not None and len(pair.code) == 8
        assert find(app, "oscar").pair_code == pair.code
        await app.service.simulate(session.id, act("scan"))
        await sync(pilot, clock, 1.0)
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "closes when linked")
        assert find(app, "oscar").status == Status.CONNECTED
        assert find(app, "oscar").phone_number == "14155550123"


async def test_new_session_by_phone_opens_pairing_code(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, NewSessionScreen)
        form.query_one("#new-name").value = "papa"  # type: ignore[attr-defined]
        form.query_one("#method-phone").value = True  # type: ignore[attr-defined]
        await sync(pilot)
        assert form.query_one("#new-phone-row").display
        await pilot.press("enter")  # no number yet
        assert "needed to link by phone number" in plain(form.query_one("#new-phone-error"))
        form.query_one("#new-phone").value = "+441632960123"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PairCodeScreen), "the pairing code screen")
        await sync(pilot, clock, 0.5)
        pair = app.screen
        assert isinstance(pair, PairCodeScreen)
        await wait_until(pilot, lambda: pair.code is not None, "the code arrives by event")


async def test_new_session_validation_stays_open(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        await pilot.press("n")
        form = app.screen
        form.query_one("#new-name").value = "quebec"  # type: ignore[attr-defined]
        form.query_one("#new-webhook").value = "not a url"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        assert app.screen is form
        assert "not a web address" in plain(form.query_one("#new-webhook-error"))
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        assert app.state.sessions == {}


async def test_detail_pane_follows_highlight_and_events_live(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        romeo = await link(pilot, clock, "romeo")
        await app.service.create_session(spec("sierra", start=False))
        await sync(pilot)
        pane = app.screen.query_one(DetailPane)
        assert pane.session_id == romeo.id
        await app.service.simulate(romeo.id, act("message", chat="14155550100", text="hola"))
        await sync(pilot)
        events_text = plain(pane.query_one("#detail-events"))
        assert "hola" in events_text
        assert "1 in, 0 out" in plain(pane.query_one("#detail-fields"))
        await pilot.press("down")
        assert pane.session_id == find(app, "sierra").id

        await pilot.press("up", "enter")  # connected: enter opens the details
        assert isinstance(app.screen, DetailScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_sort_cycles_columns(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await link(pilot, clock, "zulu")
        await app.service.create_session(spec("alpha", start=False))
        await sync(pilot)
        assert row_names(app) == ["alpha", "zulu"]
        await pilot.press("o")  # by status: connected before stopped
        assert row_names(app) == ["zulu", "alpha"]
        await pilot.press("O")
        assert row_names(app) == ["alpha", "zulu"]
        table = app.screen.query_one(SessionsTable)
        name_width = table.columns_for(table.size.width)[0][1]
        # Offsets count from the table's outer edge: its round border takes one cell each side.
        await pilot.click(SessionsTable, offset=(2, 1))  # the NAME header
        assert (table.sort_column, row_names(app)) == ("name", ["alpha", "zulu"])
        await pilot.click(SessionsTable, offset=(2, 1))  # again: descending
        assert row_names(app) == ["zulu", "alpha"]
        await pilot.click(SessionsTable, offset=(name_width + 4, 1))  # STATUS
        assert table.sort_column == "status" and row_names(app) == ["zulu", "alpha"]


async def test_burst_of_events_is_one_refresh(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    app.refresh_interval = 0.05
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        for n in range(40):
            await app.service.create_session(spec(f"s{n:02d}", start=False))
        await sync(pilot)
        before = app.flushes
        ids = list(app.state.sessions)
        started = time.perf_counter()
        for session_id in ids:
            await app.service.start(session_id)
        await sync(pilot, clock, 0.5)  # 40 sessions: status + qr events each
        elapsed = time.perf_counter() - started
        assert all(s.status == Status.QR_READY for s in app.state.sessions.values())
        # 120 events, and repaints paced by the refresh interval, not by events: at most one
        # per interval while they came in, plus the last (a loaded machine takes longer, and
        # may repaint a little more, but never once per event or per session).
        repaints = app.flushes - before
        assert repaints <= 2 + elapsed / app.refresh_interval
        assert repaints < len(ids)


async def test_help_lists_every_key(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = plain(app.screen.query_one("#help-text"))
        for label in ("New", "Start", "Stop", "Restart", "Log out", "Delete", "Link by phone", "Filter",
                      "Sort", "Help", "Quit", "Command palette", "DEMO: scan", "connected", "failed"):
            assert label in text, label
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_command_palette_finds_a_session(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        for name in ("tango", "uniform", "victor"):
            await app.service.create_session(spec(name, start=False))
        await sync(pilot)
        assert app.screen.query_one(SessionsTable).current_id == find(app, "tango").id
        await pilot.press("ctrl+p")
        await pilot.press(*"go to victor")
        await sync(pilot)
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "the palette closes")
        assert app.screen.query_one(SessionsTable).current_id == find(app, "victor").id


async def test_quit_without_prompt_when_nothing_pending(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_stop_all_asks_then_stops_every_running_session(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await link(pilot, clock, "whiskey")
        await app.service.create_session(spec("xray"))  # initializing
        await app.service.create_session(spec("yankee", start=False))
        await sync(pilot)
        await pilot.press("X")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await sync(pilot)
        assert find(app, "whiskey").status == Status.CONNECTED

        await pilot.press("X", "y")
        await wait_until(pilot, lambda: all(s.status == Status.STOPPED for s in app.state.sessions.values()),
                         "everything stopped")
        assert any("Stopped 2 sessions" in t for t in toasts(app))


async def test_detail_pane_shows_webhook_deliveries(make_app: AppFactory, clock: FakeClock, settings: Settings) -> None:
    # A server refuses a webhook to a loopback address unless its operator allows it.
    app = make_app(settings_=settings.model_copy(update={"webhook_allowed_hosts": ["127.0.0.1"]}))
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        # Nothing listens on the discard port: every delivery fails and is retried later.
        hooked = await app.service.create_session(
            spec("zeta", start=False, settings={"webhook_url": "http://127.0.0.1:9/hooks"}))
        await app.service.create_session(spec("plain", start=False))
        await sync(pilot)
        app.go_to_session(hooked.id)
        section = app.screen.query_one("#detail-webhooks")

        def shown() -> bool:
            return section.display and "status" in plain(section)

        await wait_until(pilot, shown, "the delivery of the 'created' status event")
        assert "Nothing sent yet" not in plain(section)
        app.go_to_session(find(app, "plain").id)
        await sync(pilot)
        assert not section.display  # no webhook, no section
