"""What admins of k9s and lazydocker expect: marks and bulk actions, logs, copy, the header, a config file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from watui.cli import main as cli
from watui.clock import FakeClock
from watui.console.config import ENV, ConsoleConfig, save_theme
from watui.console.verbs import Verb
from watui.machine import Status
from watui.models import RestoreProgress
from watui.screens.confirm import ConfirmScreen
from watui.screens.copy import CopyScreen
from watui.screens.log import LogScreen
from watui.screens.main import MainScreen
from watui.widgets.activity import Activity, sparkline
from watui.widgets.log_view import LogView
from watui.widgets.messages import BulkProgress
from watui.widgets.sessions_table import SessionsTable

from .attach_helpers import wait_for
from .conftest import AppFactory, act, engine_room, find, link, plain, spec, sync, wait_until
from .keys import toasts


def table(app: Any) -> SessionsTable:
    return app.screen.query_one(SessionsTable)


def names(app: Any, ids: set[str]) -> list[str]:
    return sorted(app.state.sessions[i].name for i in ids)


# -- marks and bulk actions ----------------------------------------------------------------


async def test_space_marks_star_marks_the_filtered_rows_escape_clears(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        for name in ("alpha", "bravo", "charlie", "delta"):
            await app.service.create_session(spec(name, start=False))
        await sync(pilot)
        await pilot.press("space", "space")  # alpha, then bravo (the cursor moves down)
        assert names(app, table(app).marked) == ["alpha", "bravo"]
        assert table(app).current_id == find(app, "charlie").id
        await pilot.press("k", "space")  # bravo again: unmarked
        assert names(app, table(app).marked) == ["alpha"]
        assert "1 marked" in plain(app.screen.query_one("#topbar"))
        await pilot.press("slash", *"ta", "enter", "asterisk")  # delta only... and alpha stays
        assert names(app, table(app).marked) == ["alpha", "delta"]
        await pilot.press("escape")  # the marks first
        assert table(app).marked == set()
        assert app.screen.query_text == "ta"
        await pilot.press("escape")  # then the filter
        assert app.screen.query_text == ""


async def test_bulk_stop_one_question_progress_and_summary(
    make_app: AppFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int, bool]] = []
    shown = MainScreen.on_bulk_progress

    async def record(self: MainScreen, message: BulkProgress) -> None:
        seen.append((message.done, message.total, message.finished))
        await shown(self, message)

    monkeypatch.setattr(MainScreen, "on_bulk_progress", record)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await link(pilot, clock, "alpha")
        await link(pilot, clock, "bravo")
        await app.service.create_session(spec("charlie", start=False))
        await sync(pilot)
        await pilot.press("asterisk", "x")
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        question = plain(confirm.query_one("#confirm-question"))
        assert "Stop 2 marked sessions?" in question
        assert "1 other cannot: not running (stopped)" in question
        await pilot.press("y")
        await wait_until(pilot, lambda: any("Stop: 2 done, 1 refused" in t for t in toasts(app)), "the summary")
        assert any("Refused: not running (stopped) (1)" in t for t in toasts(app))
        assert {s.status for s in app.state.sessions.values()} == {Status.STOPPED}
        assert seen[0] == (0, 2, False) and seen[-1] == (2, 2, True)
        assert not app.screen.query_one("#bulk").display


async def test_bulk_delete_of_nothing_deletable_asks_nothing(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        for name in ("alpha", "bravo"):
            await app.service.create_session(spec(name, start=False))
        await sync(pilot)
        await pilot.press("asterisk", "l")  # neither is linked
        assert isinstance(app.screen, MainScreen)
        assert any("Nothing to log out: 0 done, 2 refused" in t for t in toasts(app))
        await pilot.press("d", "y")
        await wait_until(pilot, lambda: not app.state.sessions, "both deleted")
        assert any("Delete: 2 done" in t for t in toasts(app))
        assert table(app).marked == set()


# -- the log view ---------------------------------------------------------------------------


async def test_session_log_scrolls_filters_and_follows(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        alpha = await link(pilot, clock, "alpha")
        for n in range(30):
            await app.service.simulate(alpha.id, act("message", chat="14155550100", text=f"hello {n}"))
        await sync(pilot)
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.loaded, "the log")
        screen = app.screen
        assert isinstance(screen, LogScreen)
        view = screen.query_one(LogView)
        assert [line.kind for line in view.lines[:2]] == ["status", "status"]
        assert len(view.lines) > 30 and view.following
        assert view.scroll_offset.y == view.max_scroll_y  # the newest at the bottom
        await pilot.press("k", "k")
        assert not view.following
        assert "paused" in plain(screen.query_one("#log-title"))
        await app.service.simulate(alpha.id, act("message", chat="14155550100", text="while paused"))
        await sync(pilot)
        assert "while paused" in view.lines[-1].text.plain
        assert view.scroll_offset.y < view.max_scroll_y  # it did not jump
        await pilot.press("G")
        assert view.following
        await pilot.press("t", "t")  # all → status → qr
        assert screen.kinds[screen.kind_index] == "qr"
        assert view.shown and all(line.kind == "qr" for line in view.shown)
        await pilot.press("t", "t")  # … → connected → message (only the types that have lines)
        assert screen.kinds[screen.kind_index] == "message"
        await pilot.press("slash", *"hello 2", "enter")
        assert {line.text.plain.split(": ", 1)[1] for line in view.shown} == {"hello 2", "hello 20", "hello 21",
                                                                              "hello 22", "hello 23", "hello 24",
                                                                              "hello 25", "hello 26", "hello 27",
                                                                              "hello 28", "hello 29"}
        await pilot.press("escape")  # clears the filters
        assert len(view.shown) == len(view.lines)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_all_sessions_log_names_each_line(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await link(pilot, clock, "alpha")
        await app.service.create_session(spec("bravo", start=False))
        await sync(pilot)
        await pilot.press("E")
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.loaded, "the log")
        view = app.screen.query_one(LogView)
        starts = {line.text.plain[15:].split()[0] for line in view.lines}
        assert starts == {"alpha", "bravo"}
        late = await app.service.create_session(spec("charlie", start=False))
        await sync(pilot)
        assert view.lines[-1].key == max(e.id for e in await app.service.list_events(session_id=late.id))


async def test_message_history_follows_live(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        alpha = await link(pilot, clock, "alpha")
        for n in range(3):
            await app.service.simulate(alpha.id, act("message", chat="14155550100", text=f"question {n}"))
        await app.service.send_message(alpha.id, "+14155550100", "an answer")
        await sync(pilot)
        await pilot.press("M")
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.loaded, "messages")
        view = app.screen.query_one(LogView)
        texts = [line.text.plain for line in view.lines]
        assert ["question 0" in texts[0], "an answer" in texts[-1]] == [True, True]
        assert [line.kind for line in view.lines] == ["in", "in", "in", "out"]
        await app.service.simulate(alpha.id, act("message", chat="14155550100", text="thanks"))
        await sync(pilot)
        assert "thanks" in view.lines[-1].text.plain and len(view.lines) == 5
        await pilot.press("m")  # the same session's events
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.kind == "events", "events")


# -- copy -----------------------------------------------------------------------------------


async def test_y_copies_id_phone_or_jid(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        alpha = await link(pilot, clock, "alpha")
        await pilot.press("y")
        assert isinstance(app.screen, CopyScreen)
        await pilot.press("p")
        assert app.clipboard == f"+{alpha.phone_number}"
        assert any("Copied the phone number" in t for t in toasts(app))
        await pilot.press("y", "j")
        assert app.clipboard == find(app, "alpha").jid and "@" in app.clipboard
        await pilot.press("y", "down", "down", "up", "up", "enter")  # the menu works with arrows too
        assert app.clipboard == alpha.id
        await app.service.create_session(spec("bravo", start=False))
        await sync(pilot)
        app.go_to_session(find(app, "bravo").id)
        await pilot.press("y", "p")  # never linked: no number to copy
        assert isinstance(app.screen, CopyScreen)
        await pilot.press("escape")
        assert app.clipboard == alpha.id


# -- the header -----------------------------------------------------------------------------


def test_activity_buckets_and_sparkline() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    activity = Activity()
    activity.sample_connected(t0, 2)
    for minute, count in ((0, 1), (1, 4), (3, 2)):
        for _ in range(count):
            activity.message(t0 + timedelta(minutes=minute, seconds=5))
    activity.sample_connected(t0 + timedelta(minutes=2), 5)
    connected, messages = activity.series(t0 + timedelta(minutes=3, seconds=30), minutes=5)
    assert connected == [0, 2, 2, 5, 5]
    assert messages == [0, 1, 4, 0, 2]
    assert sparkline(messages) == "▁▃█▁▅"
    assert sparkline([0, 0]) == "▁▁"


async def test_header_counts_sparklines_and_restore_progress(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        alpha = await link(pilot, clock, "alpha")
        bravo = await link(pilot, clock, "bravo")
        await app.service.simulate(bravo.id, act("logout"))
        await app.service.create_session(spec("charlie", start=False))
        for n in range(4):
            await clock.advance(60)
            for _ in range(n):
                await app.service.simulate(alpha.id, act("message", chat="14155550100", text="hi"))
        await sync(pilot)
        top = plain(app.screen.query_one("#topbar"))
        assert "3 sessions" in top
        assert "● 1 connected" in top and "⊘ 1 logged out" in top and "■ 1 stopped" in top
        assert "msg 3/m" in top and "▁▃▆█" in top
        # The engine's restore (in-process) or the server's, read from /v1/health (attached).
        engine_room(app).restore_progress = RestoreProgress(done=37, total=500)
        await wait_for(pilot, lambda: "restoring 37/500" in plain(app.screen.query_one("#topbar")),
                       "the header shows the restore")
        engine_room(app).restore_progress = None
        await wait_for(pilot, lambda: "restoring" not in plain(app.screen.query_one("#topbar")),
                       "the header drops it once done")


# -- the config file ------------------------------------------------------------------------


async def test_config_remaps_keys_and_sets_the_theme(make_app: AppFactory, tmp_path: Path) -> None:
    config = tmp_path / "console.toml"
    config.write_text('theme = "gruvbox"\n\n[keys]\n# delete needs a capital\n"main.delete" = "D"\n')
    app = make_app(config_path=config)
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        assert app.theme == "gruvbox"
        await app.service.create_session(spec("alpha", start=False))
        await sync(pilot)
        await pilot.press("d")
        assert isinstance(app.screen, MainScreen)
        await pilot.press("D")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape", "question_mark")
        assert " D " in plain(app.screen.query_one("#help-text"))
        await pilot.press("escape")
        app.theme = "nord"
        await sync(pilot)
    assert config.read_text() == 'theme = "nord"\n\n[keys]\n# delete needs a capital\n"main.delete" = "D"\n'


async def test_a_broken_config_is_reported_not_fatal(make_app: AppFactory, tmp_path: Path) -> None:
    config = tmp_path / "console.toml"
    config.write_text("theme = \n")
    app = make_app(config_path=config)
    async with app.run_test(size=(80, 24)) as pilot:
        await sync(pilot)
        assert isinstance(app.screen, MainScreen)
        assert any("Console config ignored" in t for t in toasts(app))


def test_save_theme_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    save_theme(path, "nord")
    assert ConsoleConfig.load(path).theme == "nord"
    path.write_text('[keys]\n"main.stop" = "x,ctrl+x"\n')
    save_theme(path, 'we"ird')
    loaded = ConsoleConfig.load(path)
    assert (loaded.theme, loaded.keys) == ('we"ird', {"main.stop": "x,ctrl+x"})


def test_watui_paths_shows_the_config_file(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "console.toml"
    result = CliRunner().invoke(cli, ["paths", "--data-dir", str(tmp_path)], env={ENV: str(target)})
    assert result.exit_code == 0, result.output
    assert f"console config: {target}" in result.output


def test_verbs_refuse_in_words() -> None:
    from datetime import UTC, datetime

    from watui.console.verbs import refusal
    from watui.models import Session

    now = datetime(2026, 1, 1, tzinfo=UTC)
    base = Session(id="s", name="n", owner="o", created_at=now, updated_at=now)
    assert refusal(base, Verb.STOP) == "not running (stopped)"
    assert refusal(base, Verb.LOGOUT) == "not linked to a phone (stopped)"
    assert refusal(base, Verb.START) is None and refusal(base, Verb.DELETE) is None
    running = base.model_copy(update={"status": Status.CONNECTED, "linked": True})
    assert refusal(running, Verb.START) == "already running (connected)"
    assert refusal(running, Verb.LOGOUT) is None
    out = base.model_copy(update={"status": Status.DISCONNECTED, "reason": "logged_out"})
    assert refusal(out, Verb.LOGOUT) == "already logged out"
