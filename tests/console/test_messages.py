"""Messages in the console: the detail pane's message log and the compose box (``m``)."""

from __future__ import annotations

from typing import Any

from textual.widgets import Input

from watui.clock import FakeClock
from watui.engines.simulated import SimulatedEngine
from watui.screens.compose import ComposeScreen
from watui.screens.details import DetailScreen
from watui.screens.help import HelpScreen
from watui.screens.main import MainScreen
from watui.widgets.detail_pane import DetailPane
from watui.widgets.sessions_table import SessionsTable, cell_text
from watui.widgets.state import RECENT_MESSAGES

from .conftest import AppFactory, act, find, link, plain, spec, sync, wait_until


def toasts(app: Any) -> list[tuple[str, str, str]]:
    """(title, message, severity) of every toast shown so far."""
    return [(n.title, n.message, n.severity) for n in app._notifications]


def log_text(app: Any) -> str:
    return plain(app.screen.query_one(DetailPane).query_one("#detail-messages"))


def fields_text(app: Any) -> str:
    return plain(app.screen.query_one(DetailPane).query_one("#detail-fields"))


def in_out(app: Any, name: str) -> str:
    """The table's IN/OUT cell for a session, as the table draws it from its own row."""
    table = app.screen.query_one(SessionsTable)
    row = next(s for s in table.rows if s.name == name)
    return cell_text("messages", row, app.now())


async def compose(pilot: Any, to: str, text: str) -> ComposeScreen:
    """``m``, then type the number, enter (on to the text), the text, enter (send)."""
    app = pilot.app
    await pilot.press("m")
    box = app.screen
    assert isinstance(box, ComposeScreen)
    await pilot.press(*to, "enter")
    assert box.query_one("#compose-text", Input).has_focus
    await pilot.press(*text, "enter")
    return box


async def test_send_from_connected_session_shows_in_log_and_counters(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        alpha = await link(pilot, clock, "alpha")
        await wait_until(pilot, lambda: app.state.messages_of(alpha.id) == [], "the (empty) log is read")
        assert "No messages yet. Press m" in log_text(app)

        await compose(pilot, "+1 415 555 0100", "Hello from the console")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "the box closes")
        await wait_until(pilot, lambda: any(t[0] == "Message sent" for t in toasts(app)), "the success toast")
        assert ("Message sent", "From 'alpha' to +14155550100", "information") in toasts(app)
        await wait_until(pilot, lambda: "Hello from the console" in log_text(app), "the message in the log")
        line = next(x for x in log_text(app).splitlines() if "+14155550100" in x)
        assert "→" in line and "sent" in line and "just now" in line

        assert "0 in, 1 out, 0 failed" in fields_text(app)
        assert in_out(app, "alpha") == "0/1"
        stored = (await app.service.list_messages(alpha.id)).messages
        assert [(m.chat, m.text, m.status) for m in stored] == [("14155550100", "Hello from the console", "sent")]

        # The next message starts from the last number used.
        await pilot.press("m")
        box = app.screen
        assert isinstance(box, ComposeScreen)
        assert box.query_one("#compose-to", Input).value == "+14155550100"
        assert box.query_one("#compose-text", Input).has_focus
        await pilot.press("escape")


async def test_compose_refused_when_not_connected(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        await app.service.create_session(spec("bravo", start=False))
        await sync(pilot)
        await pilot.press("m")
        await sync(pilot)
        assert isinstance(app.screen, MainScreen)  # no box opened
        assert toasts(app) == [
            ("Cannot send", "'bravo' is stopped, not connected: only a connected session can send messages.",
             "warning")
        ]
        assert "Press m" not in log_text(app)  # the hint is only for connected sessions
        assert find(app, "bravo").messages_sent == 0


async def test_failed_send_shows_the_engine_reason(
    make_app: AppFactory, clock: FakeClock, engine: SimulatedEngine
) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        charlie = await link(pilot, clock, "charlie")
        engine.fail_sends = "recipient is not on WhatsApp"
        await compose(pilot, "+14155550199", "are you there?")
        await wait_until(pilot, lambda: any(t[2] == "error" for t in toasts(app)), "an error toast")
        title, message, _ = next(t for t in toasts(app) if t[2] == "error")
        assert title == "Message to +14155550199 failed"
        assert "recipient is not on WhatsApp" in message
        await wait_until(pilot, lambda: "are you there?" in log_text(app), "the failed message in the log")
        text = log_text(app)
        assert "failed" in text and "recipient is not on WhatsApp" in text
        assert "0 in, 0 out, 1 failed" in fields_text(app)
        assert in_out(app, "charlie") == "0/0"
        logged = app.state.messages_of(charlie.id)
        assert logged is not None and [(m.status, m.error) for m in logged] == [
            ("failed", "recipient is not on WhatsApp")
        ]


async def test_incoming_messages_appear_live_without_requery(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        delta = await link(pilot, clock, "delta")
        await wait_until(pilot, lambda: app.state.messages_of(delta.id) == [], "the log is read")
        service = app.service
        reads: list[str] = []
        original = service.list_messages

        async def counting(session_id: str, **kwargs: Any) -> Any:
            reads.append(session_id)
            return await original(session_id, **kwargs)

        service.list_messages = counting  # type: ignore[method-assign]

        await service.simulate(delta.id, act("message", chat="14155550111", text="Is my order ready?"))
        await sync(pilot)
        line = next(x for x in log_text(app).splitlines() if "+14155550111" in x)
        assert "←" in line and "received" in line
        assert "Is my order ready?" in log_text(app)
        assert "1 in, 0 out, 0 failed" in fields_text(app)
        assert in_out(app, "delta") == "1/0"

        # A chatty session: the log keeps the latest few, newest first, and never asks again.
        for n in range(RECENT_MESSAGES + 5):
            await service.simulate(delta.id, act("message", chat="14155550111", text=f"ping {n:02d}"))
        await sync(pilot)
        kept = app.state.messages_of(delta.id)
        assert kept is not None and len(kept) == RECENT_MESSAGES
        assert kept[-1].text == f"ping {RECENT_MESSAGES + 4:02d}"
        shown = log_text(app)
        assert shown.index(f"ping {RECENT_MESSAGES + 4:02d}") < shown.index(f"ping {RECENT_MESSAGES + 3:02d}")
        assert "Is my order ready?" not in shown
        assert in_out(app, "delta") == f"{RECENT_MESSAGES + 6}/0"
        assert reads == []


async def test_log_is_read_from_the_store_when_a_session_is_first_shown(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await link(pilot, clock, "echo")
        foxtrot = await link(pilot, clock, "foxtrot")
        await app.service.simulate(foxtrot.id, act("message", chat="14155550122", text="sent before you looked"))
        await sync(pilot)
        assert app.state.messages_of(foxtrot.id) is None  # never shown: nothing kept for it
        await pilot.press("down")
        await wait_until(pilot, lambda: "sent before you looked" in log_text(app), "the stored message")
        await app.service.simulate(foxtrot.id, act("message", chat="14155550122", text="and one more"))
        await sync(pilot)
        logged = app.state.messages_of(foxtrot.id)
        assert logged is not None and [m.text for m in logged] == ["sent before you looked", "and one more"]

        # The full-screen details show the same log, one line per message.
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        await sync(pilot)
        lines = [x for x in log_text(app).splitlines() if "+14155550122" in x]
        assert len(lines) == 2 and "and one more" in lines[0] and "received" in lines[0]


async def test_compose_validates_inline_and_escape_cancels(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        golf = await link(pilot, clock, "golf")
        await pilot.press("m")
        box = app.screen
        assert isinstance(box, ComposeScreen)
        await pilot.press(*"12345", "enter")
        assert app.screen is box
        assert "international format" in plain(box.query_one("#compose-error"))
        assert box.query_one("#compose-to", Input).has_focus

        await pilot.press("ctrl+u", *"+14155550123", "tab", *"   ", "enter")
        assert app.screen is box
        assert "Text:" in plain(box.query_one("#compose-error"))

        await pilot.press("escape")
        await sync(pilot)
        assert isinstance(app.screen, MainScreen)
        assert find(app, golf.name).messages_sent == 0
        assert (await app.service.list_messages(golf.id)).total == 0


async def test_compose_box_fits_80x24(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await link(pilot, clock, "hotel")
        await pilot.press("m")
        box = app.screen
        assert isinstance(box, ComposeScreen)
        await sync(pilot)
        dialog = box.query_one("#compose-dialog").region
        assert dialog.x >= 0 and dialog.y >= 0 and dialog.right <= 80 and dialog.bottom <= 24
        for wid in ("#compose-to", "#compose-text", "#send", "#cancel"):
            widget = box.query_one(wid).region
            assert dialog.contains_region(widget), wid


async def test_message_key_in_help_and_palette(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await link(pilot, clock, "india")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = plain(app.screen.query_one("#help-text"))
        assert "Send a test message" in text and "Message box" in text
        await pilot.press("escape")

        await pilot.press("ctrl+p")
        await pilot.press(*"send a message")
        await sync(pilot)
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ComposeScreen), "the palette opens the box")


def test_message_log_fits_the_narrow_pane() -> None:
    """Beside the table the log gets ~40 cells: two lines a message, the text cut, an error kept whole."""
    import io
    from datetime import UTC, datetime, timedelta

    from rich.console import Console

    from watui.models import MessageDirection, MessageStatus
    from watui.widgets.detail_pane import MessageLog
    from watui.widgets.state import LoggedMessage

    now = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    log = MessageLog([
        LoggedMessage(MessageDirection.IN, "14155550100", "a question that is much too long for forty cells\n"
                      "and has a second line", MessageStatus.RECEIVED, now - timedelta(minutes=3), "A"),
        LoggedMessage(MessageDirection.OUT, "14155550199", "hi", MessageStatus.FAILED, now - timedelta(seconds=20),
                      error="recipient 14155550199 is not on WhatsApp"),
    ], now)
    console = Console(width=40, file=io.StringIO(), color_system=None)
    console.print(log)
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert all(len(line) <= 40 for line in lines)
    assert lines[0].startswith("→ +14155550199 failed") and lines[0].rstrip().endswith("20s ago")
    assert lines[1].strip() == "hi"
    error = " ".join(line.strip() for line in lines[2:-2])
    assert error == "✖ recipient 14155550199 is not on WhatsApp"
    assert lines[-2].startswith("← +14155550100 received") and lines[-2].rstrip().endswith("3m ago")
    assert lines[-1].startswith("  a question that is much too long") and lines[-1].rstrip().endswith("…")


async def test_a_paced_session_queues_the_message_and_says_so(make_app: AppFactory, clock: FakeClock) -> None:
    """``settings.send_rate``: the send is queued (status pending), the toast says it goes in its
    turn, and the log shows it sent once the clock reaches its turn."""
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        alpha = await link(pilot, clock, "alpha", settings={"send_rate": 2})
        await compose(pilot, "+1 415 555 0100", "first")
        await wait_until(pilot, lambda: any(t[0] == "Message queued" for t in toasts(app)), "the queued toast")
        assert ("Message queued", "From 'alpha' to +14155550100: it goes in its turn (2 a minute)",
                "information") in toasts(app)
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "the box closes")
        await pilot.press("m")  # the box starts from the last number, on the text
        assert isinstance(app.screen, ComposeScreen)
        await pilot.press(*"second", "enter")
        await wait_until(pilot, lambda: sum(t[0] == "Message queued" for t in toasts(app)) == 2, "a second toast")

        async def statuses() -> list[str]:
            return [m.status.value for m in (await app.service.list_messages(alpha.id)).messages]

        await sync(pilot, clock, 0)
        newest, oldest = await statuses()
        assert newest == "pending" and oldest != "pending"  # the first went at once, the second waits
        await sync(pilot, clock, 40.0)  # a gap at 2 a minute is 21-39 s
        assert "pending" not in await statuses()
        assert not any(t[0] == "Message sent" for t in toasts(app))
