"""What a first week of use found (issue 18, section 5): key remaps that clash or name nothing,
the detail pane behind the message log, a header that counted parked sessions as connected,
log lines without a status or with a phone number written another way, a type filter that
stopped on empty types, and saving the sessions table to a file."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from textual.command import CommandList, CommandPalette

from watui.app import WatuiApp
from watui.cli import main as cli
from watui.clock import FakeClock
from watui.config import Settings
from watui.console.config import ENV, check_keys
from watui.engines.simulated import Device, SimulatedEngine
from watui.machine import EventType, Status
from watui.models import Event, Message, MessageDirection, MessageStatus, Session
from watui.screens.help import HelpScreen
from watui.screens.keymap import key_scopes
from watui.screens.log import LogScreen
from watui.screens.main import MainScreen
from watui.stores.datadir import make_private
from watui.stores.sqlite import Store
from watui.widgets.detail_pane import DetailPane
from watui.widgets.log_view import LogView
from watui.widgets.state import ConsoleState

from .conftest import AppFactory, act, find, link, plain, spec, sync, wait_until

Pilot = Any
SnapCompare = Callable[..., bool]


def toasts(app: Any) -> list[tuple[str, str]]:
    return [(n.title, n.message) for n in app._notifications]


def topbar(app: Any) -> str:
    return plain(app.screen.query_one("#topbar"))


# -- 1. console.toml: remaps that clash or name nothing are left out, and said so -------------

CLASHING = '[keys]\n"main.stop" = "s"\n"main.stpo" = "k"\n"main.delete" = "D"\n'


async def test_a_clashing_or_unknown_remap_is_ignored_and_said(make_app: AppFactory, tmp_path: Path) -> None:
    config = tmp_path / "console.toml"
    config.write_text(CLASHING)
    app = make_app(config_path=config)
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        assert isinstance(app.screen, MainScreen)
        notice = dict(toasts(app))["Console config: 2 key remaps ignored"]
        assert notice.splitlines() == [
            '"main.stop" = "s" ignored: s is Start (main.start) on the sessions table; Stop keeps x.',
            '"main.stpo" = "k" ignored: no key has the id "main.stpo" (did you mean "main.stop"?); '
            "the help screen (?) lists them.",
        ]
        alpha = await app.service.create_session(spec("alpha", start=False))
        await sync(pilot)
        await pilot.press("s")  # still Start: the remap that would have taken its key is out
        await wait_until(pilot, lambda: find(app, "alpha").status != Status.STOPPED, "alpha starts")
        await pilot.press("x")
        await wait_until(pilot, lambda: find(app, "alpha").status == Status.STOPPED, "x still stops")
        await pilot.press("D")  # the remap that clashes with nothing is applied
        assert not isinstance(app.screen, MainScreen)
        await pilot.press("escape", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = {line.split()[1]: line.split()[0] for line in plain(app.screen.query_one("#help-text")).splitlines()
                if re.match(r"\s+\S+\s+(Start|Stop|Delete)\s{2}", line)}
        assert keys == {"Start": "s", "Stop": "x", "Delete": "D"}
        assert alpha.id in app.state.sessions


def test_remaps_are_checked_screen_by_screen() -> None:
    scopes = key_scopes(WatuiApp)

    def check(keys: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        result = check_keys(keys, scopes)
        return result.applied, result.ignored

    # A swap is fine: after it, no key has two bindings.
    assert check({"main.start": "x", "main.stop": "s"}) == ({"main.start": "x", "main.stop": "s"}, [])
    # Two remaps to one key: the later one in the file is left out.
    assert check({"main.start": "z", "main.stop": "z"}) == ({"main.start": "z"}, [
        '"main.stop" = "z" ignored: z is remapped to Start (main.start) as well, on the sessions table; '
        "Stop keeps x."])
    # The focused table's keys and the app's count as the screen's.
    assert check({"main.stop": "j"})[1] == [
        '"main.stop" = "j" ignored: j is Down (table.down) on the sessions table; Stop keeps x.']
    assert check({"main.new": "q"})[1] == [
        '"main.new" = "q" ignored: q is Quit (app.quit) on the sessions table; New keeps n.']
    # A dialog holds the keys: q means yes there without taking Quit anywhere else.
    assert check({"confirm.yes": "q"}) == ({"confirm.yes": "q"}, [])
    # The text field's own keys win in the message box.
    assert check({"compose.send": "ctrl+a"})[1] == [
        '"compose.send" = "ctrl+a" ignored: ctrl+a is Go to start (<home>) on the message box; Send keeps ctrl+s.']
    # Left out, Stop keeps x, and the remap that counted on x being free is left out too.
    applied, ignored = check({"main.stop": "j", "main.restart": "x"})
    assert applied == {} and [line.split(" ignored")[0] for line in ignored] == [
        '"main.stop" = "j"', '"main.restart" = "x"']
    assert "x is Stop (main.stop) on the sessions table" in ignored[1]
    assert check({"main.stop": ""})[1] == ['"main.stop" = "" ignored: that is not a list of keys like "x,ctrl+x".']
    # Default sharing stays (help's ? is also the app's Help); a same-action key is no clash.
    assert check({"help.close": "escape,?"}) == ({"help.close": "escape,?"}, [])
    assert check({"app.quit": "ctrl+q"}) == ({"app.quit": "ctrl+q"}, [])


def test_watui_paths_says_what_of_the_config_is_ignored(tmp_path: Path) -> None:
    config = tmp_path / "console.toml"
    config.write_text(CLASHING)
    result = CliRunner().invoke(cli, ["paths", "--data-dir", str(tmp_path)], env={ENV: str(config)})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    at = lines.index(f"console config: {config}  (key bindings and theme)")
    assert lines[at + 1].startswith('  "main.stop" = "s" ignored: s is Start (main.start)')
    assert lines[at + 2].startswith('  "main.stpo" = "k" ignored: no key has the id')
    config.write_text("theme = \n")
    result = CliRunner().invoke(cli, ["paths", "--data-dir", str(tmp_path)], env={ENV: str(config)})
    assert f"  not used: {config}:" in result.output
    config.write_text('[keys]\n"main.delete" = "D"\n')
    result = CliRunner().invoke(cli, ["paths", "--data-dir", str(tmp_path)], env={ENV: str(config)})
    assert result.output.splitlines()[-1] == f"console config: {config}  (key bindings and theme)"


def test_the_remap_notice(snap_compare: SnapCompare, make_app: AppFactory, tmp_path: Path) -> None:
    config = tmp_path / "console.toml"
    config.write_text(CLASHING)

    async def shown(pilot: Pilot) -> None:
        await sync(pilot)

    assert snap_compare(make_app(config_path=config), terminal_size=(80, 24), run_before=shown)


# -- 2. the detail pane follows message_status, as the message log does ------------------------


def pane_status(app: Any) -> str:
    """The status the detail pane shows for the message to +14155550100."""
    text = plain(app.screen.query_one(DetailPane).query_one("#detail-messages"))
    line = next(x for x in text.splitlines() if "+14155550100" in x)
    return line.split()[-1]  # "just now → +14155550100 Your order has left sent"


async def test_the_detail_pane_follows_delivered_and_read(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        alpha = await link(pilot, clock, "alpha")
        await wait_until(pilot, lambda: app.state.messages_of(alpha.id) == [], "the (empty) log is read")
        await app.service.send_message(alpha.id, "+14155550100", "Your order has left")
        await sync(pilot)
        assert pane_status(app) == "sent"
        await sync(pilot, clock, 2.0)  # the simulated phone: delivered after 2 s, read after 4 s
        assert pane_status(app) == "delivered"
        await sync(pilot, clock, 2.0)
        assert pane_status(app) == "read"
        await pilot.press("M")  # the message log says the same
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.loaded, "the log")
        assert app.screen.query_one(LogView).lines[-1].text.plain.endswith("[read]")


def _event(event_id: int, kind: EventType, payload: dict[str, Any], session_id: str = "s1") -> Event:
    when = datetime(2026, 11, 21, 9, 30, event_id, tzinfo=UTC)
    return Event(id=event_id, type=kind, session_id=session_id, owner="o", timestamp=when, payload=payload)


def test_a_status_heard_while_the_log_is_read_is_kept_for_it() -> None:
    """The receipt can come between the store read and its answer: the read's ``sent`` must
    not win over the ``read`` the events already told."""
    state = ConsoleState()
    state.follow_messages("s1")
    state.add_event(_event(1, EventType.MESSAGE_STATUS, {"message_id": "M1", "status": "read", "chat": "1"}))
    state.add_event(_event(2, EventType.MESSAGE_STATUS, {"message_id": "M1", "status": "delivered", "chat": "1"}))
    stored = Message(id=1, session_id="s1", direction=MessageDirection.OUT, chat="1", text="hi", message_id="M1",
                     status=MessageStatus.SENT, timestamp=datetime(2026, 11, 21, 9, 0, tzinfo=UTC))
    state.seed_messages("s1", [stored])
    assert [m.status for m in state.messages_of("s1") or []] == [MessageStatus.READ]
    # A late "delivered" never moves a read message back.
    state.add_event(_event(3, EventType.MESSAGE_STATUS, {"message_id": "M1", "status": "delivered", "chat": "1"}))
    assert [m.status for m in state.messages_of("s1") or []] == [MessageStatus.READ]


# -- 3. the header during the start-up restore ----------------------------------------------


async def seed_parked(settings: Settings, engine: SimulatedEngine, count: int, status: Status) -> list[str]:
    """Linked sessions as the last run left them: parked by its shutdown (``disconnected``),
    or still ``connected`` (it crashed)."""
    make_private(settings.data_dir)
    store = await Store.open(settings.db_path, synchronous="OFF")
    when = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    sessions = []
    for i in range(count):
        number = f"1555000{i:04d}"
        sessions.append(Session(
            id=f"ses_{i:04d}", name=f"line-{i}", owner="local", created_at=when, updated_at=when, status=status,
            reason="shutdown" if status == Status.DISCONNECTED else None, autostart=True, linked=True,
            phone_number=number,
        ))
        engine.save_device(settings.auth_path(sessions[-1].id),
                           Device(jid=f"{number}:1@s.whatsapp.net", phone_number=number, push_name="Ana"))
    await store.write(sessions=sessions)
    await store.close()
    return [s.id for s in sessions]


async def test_sessions_waiting_for_the_restore_count_as_to_restore(
    make_app: AppFactory, settings: Settings, engine: SimulatedEngine, clock: FakeClock
) -> None:
    await seed_parked(settings, engine, 3, Status.DISCONNECTED)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: "restoring 0/3" in topbar(app), "the restore in the header")
        top = topbar(app)
        assert "◔ 3 to restore" in top
        assert "connected" not in top and "disconnected" not in top
        await sync(pilot, clock, 5.0)  # the fake clock moves: every one reconnects
        await wait_until(pilot, lambda: "restoring" not in topbar(app), "the restore is over")
        top = topbar(app)
        assert "● 3 connected" in top and "to restore" not in top


@pytest.mark.local_only("attached, the server parks them before the console lists any")
async def test_sessions_a_crash_left_connected_are_not_counted_connected(
    make_app: AppFactory, settings: Settings, engine: SimulatedEngine, clock: FakeClock
) -> None:
    """The console may list the sessions before the restore parks them (still ``connected``
    from the crashed run); once the park's events are in, the header believes them, not
    the snapshot it has not read again yet."""
    ids = await seed_parked(settings, engine, 3, Status.CONNECTED)
    app = make_app(refresh_interval=3600)  # no re-read of the sessions unless a test asks

    def parked(session_id: str) -> bool:
        told = any(e.type == EventType.STATUS and e.payload.get("to") == "disconnected"
                   for e in app.state.recent(session_id))
        return told or app.state.sessions[session_id].status == Status.DISCONNECTED

    async with app.run_test(size=(120, 40)) as pilot:
        await app.ready.wait()
        for _ in range(100):
            if all(parked(i) for i in ids):
                break
            await pilot.pause()
        assert all(parked(i) for i in ids)
        app.refresh_times()  # what the header's own timers do
        top = topbar(app)
        assert "◔ 3 to restore" in top and "restoring 0/3" in top
        assert "connected" not in top


def test_the_header_while_restoring(snap_compare: SnapCompare, make_app: AppFactory, settings: Settings,
                                    engine: SimulatedEngine, clock: FakeClock) -> None:
    async def restoring(pilot: Pilot) -> None:
        await wait_until(pilot, lambda: "restoring 0/4" in topbar(pilot.app), "the restore in the header")
        await pilot.app.service.create_session(spec("new-line", start=False))
        await sync(pilot)

    import asyncio

    asyncio.run(seed_parked(settings, engine, 4, Status.DISCONNECTED))
    assert snap_compare(make_app(), terminal_size=(120, 24), run_before=restoring)


# -- 4. log lines: statuses shown, one phone format, only types present ----------------------


async def test_log_lines_show_message_statuses_and_numbers_as_the_panes_do(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        alpha = await link(pilot, clock, "alpha")
        await app.service.simulate(alpha.id, act("message", chat="14155550100", text="where is it?"))
        await app.service.send_message(alpha.id, "+14155550100", "on its way")
        await sync(pilot, clock, 4.0)  # delivered, then read
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.loaded, "the log")
        view = app.screen.query_one(LogView)
        lines = {line.kind: [] for line in view.lines}
        for line in view.lines:
            lines[line.kind].append(line.text.plain)
        assert [re.sub(r"^.*message status ", "", t).split("  ")[0] for t in lines["message_status"]] == [
            "delivered → +14155550100", "read → +14155550100"]
        assert [t.split("message ", 1)[1] for t in lines["message"]] == [
            "← +14155550100: where is it?", "→ +14155550100: on its way"]
        assert not any(re.search(r"(?<!\+)14155550100", line.text.plain) for line in view.lines)
        await pilot.press("escape")
        events = plain(app.screen.query_one(DetailPane).query_one("#detail-events"))
        assert "read → +14155550100" in events and "← +14155550100: where is it?" in events


async def test_t_cycles_through_the_types_that_have_lines(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        alpha = await link(pilot, clock, "alpha")
        await app.service.send_message(alpha.id, "+14155550100", "hello")
        await sync(pilot, clock, 2.0)
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.loaded, "the log")
        screen = app.screen
        assert isinstance(screen, LogScreen)
        seen = []
        for _ in range(6):
            await pilot.press("t")
            seen.append(screen.kinds[screen.kind_index])
        assert seen == ["status", "qr", "connected", "message", "message_status", None]
        # With a text filter, only the types with a matching line.
        await pilot.press("slash", *"hello", "enter", "t")
        assert screen.kinds[screen.kind_index] == "message"
        await pilot.press("t")
        assert screen.kinds[screen.kind_index] is None
        # The messages log of a session that only sent: out, then all; nothing else to cycle.
        await pilot.press("escape", "m")
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.kind == "messages"
                         and app.screen.loaded, "the messages")
        screen = app.screen
        await pilot.press("t")
        assert screen.kinds[screen.kind_index] == "out"
        await pilot.press("t")
        assert screen.kinds[screen.kind_index] is None


# -- 5. export the sessions table as shown --------------------------------------------------


def read(path: Path) -> tuple[int, bytes]:
    """A file's permission bits and bytes."""
    return path.stat().st_mode & 0o777, path.read_bytes()


async def palette(pilot: Pilot, command: str) -> None:
    """Run a command of the palette by its name."""
    await pilot.press("ctrl+p")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, CommandPalette), "the palette")
    await pilot.press(*command)

    def found() -> bool:
        listed = pilot.app.screen.query_one(CommandList)
        chosen = listed.highlighted_option
        return chosen is not None and str(chosen.prompt).splitlines()[0].casefold() == command

    await wait_until(pilot, found, f"{command!r} in the palette")
    await pilot.press("enter")
    await wait_until(pilot, lambda: not isinstance(pilot.app.screen, CommandPalette), "the palette closes")


async def exported(pilot: Pilot, count: int) -> tuple[str, str]:
    """The export toast (title, message) once it is there."""
    app = pilot.app
    await wait_until(pilot, lambda: len([t for t in toasts(app) if t[0].startswith("Exported")]) >= count,
                     "the export toast")
    return [t for t in toasts(app) if t[0].startswith("Exported")][count - 1]


async def test_export_writes_the_rows_shown_as_csv_and_json(
    make_app: AppFactory, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    app = make_app(data_dir=tmp_path / "data-dir")
    async with app.run_test(size=(120, 40)) as pilot:
        south = await link(pilot, clock, "south")
        for name in ("north", "=SUM(1+1)", "-rm", "west"):
            await app.service.create_session(spec(name, start=False))
        await sync(pilot)
        await pilot.press("slash", *"u", "enter", "O")  # south and =SUM(1+1); by name, descending
        await sync(pilot)
        formula = find(app, "=SUM(1+1)")

        await palette(pilot, "export sessions as csv")
        title, message = await exported(pilot, 1)
        path = Path(message.splitlines()[0])
        assert title == "Exported 2 sessions as CSV"
        assert message.splitlines()[1] == "in the current directory"
        assert path.parent == here and path.name == "watui-sessions-20261121-093001.csv"
        mode, content = read(path)
        assert oct(mode) == "0o600"
        rows = list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))
        assert rows[0] == ["ID", "NAME", "STATUS", "PHONE", "ACTIVE", "IN/OUT", "RECONNECTS"]
        assert [r[:3] for r in rows[1:]] == [[south.id, "south", "connected"],
                                             [formula.id, "'=SUM(1+1)", "stopped"]]
        assert rows[1][3] == f"'+{south.phone_number}"  # a leading + is a formula to a spreadsheet
        assert rows[2][3:] == ["—", "—", "0/0", "0"]

        # Again in the same second: a new name, the first file untouched.
        first = read(path)[1]
        await palette(pilot, "export sessions as json")
        title, message = await exported(pilot, 2)
        second = Path(message.splitlines()[0])
        assert title == "Exported 2 sessions as JSON" and second.name == "watui-sessions-20261121-093001.json"
        records = json.loads(read(second)[1])
        assert [list(r) for r in records] == [["id", "name", "status", "phone", "active", "in_out",
                                               "reconnects"]] * 2
        assert [(r["id"], r["name"], r["phone"]) for r in records] == [
            (south.id, "south", f"+{south.phone_number}"), (formula.id, "=SUM(1+1)", "—")]
        await palette(pilot, "export sessions as csv")
        _, message = await exported(pilot, 3)
        assert Path(message.splitlines()[0]).name == "watui-sessions-20261121-093001-2.csv"
        assert read(path)[1] == first


async def test_export_goes_to_the_data_dir_when_the_current_directory_cannot_take_it(
    make_app: AppFactory, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    os.rmdir(gone)  # the shell's directory was removed under it
    data_dir = tmp_path / "data-dir"
    data_dir.mkdir()
    app = make_app(data_dir=data_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.service.create_session(spec("alpha", start=False))
        await sync(pilot)
        await palette(pilot, "export sessions as csv")
        title, message = await exported(pilot, 1)
        path = Path(message.splitlines()[0])
        assert title == "Exported 1 session as CSV"
        assert path.parent == data_dir and read(path)[1].startswith(b"ID,NAME,")
        assert message.splitlines()[1].startswith("in the data dir (the current directory: ")
        # An empty view: nothing written, and said.
        await pilot.press("slash", *"nothing like it", "enter")
        await palette(pilot, "export sessions as json")
        await wait_until(pilot, lambda: any("nothing to export" in t[1] for t in toasts(app)), "the refusal")
        assert sorted(p.name for p in data_dir.iterdir()) == [path.name]
