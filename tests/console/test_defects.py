"""Issue 10's defects, one test each, as a new user hit them (tmux, 80x24 to 200x60)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import Footer, Input
from textual.widgets._toast import Toast

from watui.app import WatuiApp
from watui.clock import FakeClock
from watui.machine import Status
from watui.screens.commands import SessionCommands
from watui.screens.confirm import ConfirmScreen
from watui.screens.details import DetailScreen
from watui.screens.help import HelpScreen
from watui.screens.main import MainScreen
from watui.screens.new_session import NewSessionScreen
from watui.screens.pair_code import PairCodeScreen
from watui.screens.qr import QrScreen
from watui.widgets.detail_pane import DetailPane
from watui.widgets.qr_view import QrView
from watui.widgets.sessions_table import SessionsTable

from .conftest import AppFactory, act, find, link, plain, spec, sync, wait_until
from .keys import burst, toasts

Pilot_ = Pilot[None]


def row_text(app: WatuiApp, name: str) -> str:
    table = app.screen.query_one(SessionsTable)
    index = table.index_of(find(app, name).id)
    assert index is not None
    return table.render_line(index + 1 - int(table.scroll_offset.y)).text


# 1 -------------------------------------------------------------------------------------


async def test_1_double_click_opens_the_row_under_the_pointer(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        for name in ("alpha", "billing", "charlie"):
            await app.service.create_session(spec(name, start=False))
        await sync(pilot)
        table = app.screen.query_one(SessionsTable)
        # The table's outer edge: a border line, the header line, then alpha, billing, charlie.
        await pilot.click(SessionsTable, offset=(4, 3), times=2)
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), "the details open")
        assert isinstance(app.screen, DetailScreen) and app.screen.session_id == find(app, "billing").id
        await pilot.press("escape")
        await sync(pilot)
        await pilot.click(SessionsTable, offset=(4, 0))  # the border: nothing
        assert table.sort_column == "name" and not table.sort_descending
        await pilot.click(SessionsTable, offset=(4, 1))  # the header line sorts, selects nothing
        assert table.sort_descending
        assert table.current_id == find(app, "billing").id


# 2 -------------------------------------------------------------------------------------


async def test_2_a_name_typed_in_one_burst_is_kept_whole(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        burst(pilot, "n", *"billing", "enter")
        await wait_until(pilot, lambda: bool(app.state.sessions), "a session is created")
        assert [s.name for s in app.state.sessions.values()] == ["billing"]


# 3 -------------------------------------------------------------------------------------


async def test_3_user_text_is_never_markup_nor_escapes(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        tricky = await link(pilot, clock, "[/bold]", description="[/] \x1b[31mred\x1b[0m [link=http://x]y[/link]")
        await app.service.create_session(spec("[b]x[/b]", start=False))
        await app.service.simulate(tricky.id, act("message", chat="14155550100", text="[/] \x1b]52;c;aGk=\x07"))
        await sync(pilot)
        app.go_to_session(tricky.id)
        await sync(pilot)
        assert "[/bold]" in row_text(app, "[/bold]")
        fields = plain(app.screen.query_one(DetailPane).query_one("#detail-fields"))
        assert "[/] ␛[31mred␛[0m [link=http://x]y[/link]" in fields
        messages = plain(app.screen.query_one(DetailPane).query_one("#detail-messages"))
        assert "[/] ␛]52;c;aGk=␇" in messages and "\x1b" not in messages
        await pilot.press("d")  # the question quotes the name
        assert isinstance(app.screen, ConfirmScreen)
        assert "'[/bold]'" in plain(app.screen.query_one("#confirm-question"))
        await pilot.press("n")
        await pilot.press("enter")  # the details screen's title
        await sync(pilot)
        assert isinstance(app.screen, DetailScreen)
        assert "Session details: [/bold]" in plain(app.screen.query_one("#details-title"))
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press(*"bold")
        await sync(pilot)
        await pilot.press("escape")
        await pilot.press("x", "x")  # a toast quoting the name (stop, then refused)
        await wait_until(pilot, lambda: any("[/bold]" in t for t in toasts(app)), "toasts with the name")
        await sync(pilot)
        assert app.is_running and isinstance(app.screen, MainScreen)


# 4 -------------------------------------------------------------------------------------


async def test_4_wide_characters_keep_every_column(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await sync(pilot)
        for name in ("📱shop家", "☎️ line", "plain", "家" * 40):
            await app.service.create_session(spec(name, start=False))
        await sync(pilot)
        table = app.screen.query_one(SessionsTable)
        width = table.scrollable_content_region.width
        lines = {name: row_text(app, name) for name in ("📱shop家", "☎️ line", "plain", "家" * 40)}
        badge_at = lines["plain"].index("■ stopped")
        for name, line in lines.items():
            assert cell_len(line) == width, name
            assert re.search(r" 0/0 +0$", line.rstrip()), (name, line)  # the last column is there
            before = line[: line.index("■ stopped")]
            assert cell_len(before) == cell_len(lines["plain"][:badge_at]), name  # columns line up
        assert "\ufe0f" not in lines["☎️ line"]
        assert "…" in lines["家" * 40]


# 5 -------------------------------------------------------------------------------------


async def test_5_logged_out_has_its_own_badge_and_words(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        session = await link(pilot, clock, "warehouse")
        await app.service.simulate(session.id, act("logout"))
        await sync(pilot)
        assert find(app, "warehouse").status == Status.DISCONNECTED
        assert "⊘ logged out" in row_text(app, "warehouse")
        fields = plain(app.screen.query_one(DetailPane).query_one("#detail-fields"))
        assert "logged out — link again" in fields and "may reconnect" not in fields
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        legend = plain(app.screen.query_one("#help-text"))
        assert "logged out — link again" in legend and "link kept, connection down" in legend
        assert "⇄ after a name" in legend and "a proxy of its own" in legend


# 6 -------------------------------------------------------------------------------------


async def test_6_details_scroll_with_keys(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        session = await link(pilot, clock, "chatty")
        for n in range(15):
            await app.service.simulate(session.id, act("message", chat="14155550100", text=f"message {n}"))
        await sync(pilot)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), "the details")
        await sync(pilot)
        pane = app.screen.query_one(DetailPane)
        assert pane.max_scroll_y > 10
        await pilot.press("j", "j")
        assert pane.scroll_y == 2
        await pilot.press("k")
        assert pane.scroll_y == 1
        await pilot.press("pagedown")
        assert pane.scroll_y > 10
        await pilot.press("end")
        assert pane.scroll_y == pane.max_scroll_y
        await pilot.press("home")
        assert pane.scroll_y == 0
        await pilot.press("down", "pageup")
        assert pane.scroll_y == 0


# 7 -------------------------------------------------------------------------------------


async def test_7_fast_keys_never_delete_twice(make_app: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []  # every toast, even one that expired before the end of the test
    notify = WatuiApp.notify

    def recorded(self: WatuiApp, message: str, **kwargs: Any) -> None:
        said.append(f"{kwargs.get('title', '')}: {message}")
        notify(self, message, **kwargs)

    monkeypatch.setattr(WatuiApp, "notify", recorded)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        for name in ("alpha", "bravo", "charlie"):
            await app.service.create_session(spec(name, start=False))
        await sync(pilot)
        burst(pilot, "d", "y", "d", "y")
        await wait_until(pilot, lambda: len(app.state.sessions) < 3, "a deletion")
        for _ in range(5):
            await sync(pilot)
        # The second "d y" either finds alpha still being deleted (ignored) or, once it is
        # gone, the next row: never alpha twice, never a refusal, one toast per deletion.
        left = {s.name for s in app.state.sessions.values()}
        assert "alpha" not in left and "charlie" in left
        deleted = [t for t in said if "Deleted" in t]
        assert len(deleted) == len(set(deleted)) == 3 - len(left), said
        assert not any("refused" in t for t in said), said


# 8 -------------------------------------------------------------------------------------


async def test_8_refused_at_once_before_any_question(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        await app.service.create_session(spec("stopped-one", start=False))
        await sync(pilot)
        await pilot.press("l")
        assert isinstance(app.screen, MainScreen)  # no "Log out?" first
        await wait_until(pilot, lambda: any("Cannot log out 'stopped-one'" in t for t in toasts(app)), "why")
        assert any("not linked" in t for t in toasts(app))


# 9 -------------------------------------------------------------------------------------


async def test_9_form_errors_stay_in_the_form_on_their_field(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        await app.service.create_session(spec("billing", start=False))
        await sync(pilot)
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, NewSessionScreen)
        name = form.query_one("#new-name", Input)
        form.query_one("#new-description", Input).value = "invoices"
        name.value = ""
        await pilot.press("enter")
        assert app.screen is form
        assert plain(form.query_one("#new-name-error")).strip() == "↑ needed"
        name.value = "x" * 500
        await pilot.press("enter")
        assert len(name.value) == 500  # not cut
        assert "at most 64 characters (this one has 500)" in plain(form.query_one("#new-name-error"))
        name.value = "billing"
        await pilot.press("enter")
        await wait_until(pilot, lambda: "already exists" in plain(form.query_one("#new-name-error")), "dup")
        assert app.screen is form
        assert form.query_one("#new-description", Input).value == "invoices"
        assert not any("refused" in t for t in toasts(app))
        name.value = "billing-2"
        await pilot.press("enter")
        await wait_until(pilot, lambda: "billing-2" in {s.name for s in app.state.sessions.values()}, "created")
        assert not isinstance(app.screen, NewSessionScreen)


# 10 ------------------------------------------------------------------------------------


async def test_10_toasts_keep_off_the_qr_code(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        session = await app.service.create_session(spec("front-desk"))
        await sync(pilot, clock, 0.5)
        app.open_session(session.id)
        await wait_until(pilot, lambda: isinstance(app.screen, QrScreen), "the QR screen")
        await sync(pilot)
        qr = app.screen.query_one(QrView)
        assert qr.display
        app.notify("Something happened elsewhere, in a long toast that wraps", title="Heads up")
        await sync(pilot)
        for toast in app.screen.query(Toast):
            assert not (toast.display and toast.region.overlaps(qr.region)), "a toast over the code"
        assert "Something happened elsewhere" in plain(app.screen.query_one("#qr-notice"))


async def test_10_r_on_a_live_qr_code_says_why(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        session = await app.service.create_session(spec("front-desk"))
        await sync(pilot, clock, 0.5)
        app.open_session(session.id)
        await wait_until(pilot, lambda: isinstance(app.screen, QrScreen), "the QR screen")
        generation = find(app, "front-desk").qr_generation
        await pilot.press("r")
        await sync(pilot)
        assert "still live" in plain(app.screen.query_one("#qr-notice"))
        assert find(app, "front-desk").qr_generation == generation  # nothing restarted


async def test_10_pairing_code_screen_names_the_number(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        session = await app.service.create_session(spec("front-desk", start=False))
        await sync(pilot)
        app.link_by_phone(session.id)
        await sync(pilot)
        await pilot.press(*"+14155550123", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PairCodeScreen), "the pairing code screen")
        await sync(pilot, clock, 0.5)
        assert "For the phone +14155550123" in plain(app.screen.query_one("#pair-expiry"))


async def test_10_modals_show_their_own_keys(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        await app.service.create_session(spec("alpha", start=False))
        await sync(pilot)
        for keys, screen_type in ((("d",), ConfirmScreen), (("n",), NewSessionScreen), (("question_mark",), HelpScreen)):
            await pilot.press(*keys)
            await sync(pilot)
            screen = app.screen
            assert isinstance(screen, screen_type)
            bottom, _ = screen.get_widget_at(2, 39)
            assert any(isinstance(node, Footer) for node in bottom.ancestors_with_self), (screen, bottom)
            assert bottom.screen is screen  # the modal's keys, not the main screen's
            await pilot.press("escape")
            await sync(pilot)


async def test_10_palette_lists_new_session_once(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        provider = SessionCommands(app.screen)
        titles += [hit.text for hit in [h async for h in provider.discover()]]
        assert titles.count("New session") == 1, titles


async def test_10_the_chosen_theme_is_saved(make_app: AppFactory, tmp_path: Path) -> None:
    config = tmp_path / "config" / "console.toml"
    app = make_app(config_path=config)
    async with app.run_test(size=(80, 24)) as pilot:
        await sync(pilot)
        app.theme = "nord"
        await sync(pilot)
    assert 'theme = "nord"' in config.read_text()
    again = make_app(config_path=config)
    async with again.run_test(size=(80, 24)) as pilot:
        await sync(pilot)
        assert again.theme == "nord"
