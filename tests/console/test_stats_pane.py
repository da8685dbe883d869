"""The detail pane's message statistics (today, the last 7 days and a by-day sparkline, read
from ``message_stats``) and its ``message_history`` setting, in-process and attached."""

from __future__ import annotations

from typing import Any

from watui.clock import FakeClock
from watui.screens.details import DetailScreen
from watui.widgets.detail_pane import DetailPane

from .conftest import AppFactory, act, link, plain, sync, wait_until


def pane_text(app: Any, section: str) -> str:
    return plain(app.screen.query_one(DetailPane).query_one(f"#detail-{section}"))


def row(text: str, label: str) -> str:
    """The pane's row for ``label``, its value with spaces squeezed."""
    line = next((x for x in text.splitlines() if x.strip().startswith(label)), "")
    return " ".join(line.split()[len(label.split()):])


async def test_today_and_the_week_with_a_sparkline(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        alpha = await link(pilot, clock, "alpha")
        await wait_until(pilot, lambda: row(pane_text(app, "fields"), "7 days") != "", "the statistics are read")
        assert row(pane_text(app, "fields"), "Today") == "0 in, 0 out"
        assert row(pane_text(app, "fields"), "7 days") == "0 in, 0 out ▁▁▁▁▁▁▁"

        await app.service.send_message(alpha.id, "+14155550100", "one")
        await app.service.simulate(alpha.id, act("message", text="back", chat="+14155550100"))
        await sync(pilot)
        await wait_until(pilot, lambda: row(pane_text(app, "fields"), "Today") == "1 in, 1 out", "today's counts")
        assert row(pane_text(app, "fields"), "7 days") == "1 in, 1 out ▁▁▁▁▁▁█"

        # Two days on: those messages are two bars back, and today has one more send.
        await clock.advance(2 * 86400)
        await app.service.send_message(alpha.id, "+14155550100", "two")
        await sync(pilot)
        await wait_until(pilot, lambda: row(pane_text(app, "fields"), "Today") == "0 in, 1 out", "a new day")
        assert row(pane_text(app, "fields"), "7 days") == "1 in, 2 out ▁▁▁▁█▁▅"
        stats = await app.service.message_stats(alpha.id, days=7)
        assert (stats.total, stats.sent, stats.received) == (3, 2, 1)

        # The full-screen details show the same rows.
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), "the details open")
        await wait_until(pilot, lambda: row(pane_text(app, "fields"), "7 days") == "1 in, 2 out ▁▁▁▁█▁▅",
                         "the week in the details")


async def test_history_off_is_shown_in_the_settings(make_app: AppFactory, clock: FakeClock) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await link(pilot, clock, "quiet", settings={"message_history": False})
        await sync(pilot)
        await wait_until(pilot, lambda: "History" in pane_text(app, "settings"), "the setting is shown")
        assert row(pane_text(app, "settings"), "History") == "off: message texts are not kept"
