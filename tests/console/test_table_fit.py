"""The sessions screen at every width (issue 18, section 5): the footer shows whole keys (help
always among them), the name column takes the table's spare width, a sort by a column the width
hides says so, and marks the filter hides are counted where they are acted on."""

from __future__ import annotations

import re
from typing import Any

import pytest
from textual.widgets._footer import FooterKey

from watui.machine import Status
from watui.screens.confirm import ConfirmScreen
from watui.screens.main import MainScreen
from watui.widgets.footer import FittingFooter
from watui.widgets.sessions_table import SessionsTable

from .conftest import AppFactory, find, plain, row_names, spec, sync, wait_until

Pilot = Any


def footer_keys(app: Any) -> list[FooterKey]:
    footer = app.screen.query_one(FittingFooter)
    return list(footer.query(FooterKey))


def right_edge(app: Any, key: FooterKey) -> int:
    """Where ``key`` must end: the footer's edge, or for the row's keys, the start of the
    command palette's key, which is docked over the row's right end."""
    footer = app.screen.query_one(FittingFooter).region
    palette = [other for other in footer_keys(app) if other.has_class("-command-palette")]
    if palette and key is not palette[0]:
        return palette[0].region.x
    return footer.right


@pytest.mark.parametrize("width", [160, 120, 80, 60, 40])
async def test_the_footer_shows_whole_keys_and_always_help(make_app: AppFactory, width: int) -> None:
    app = make_app()
    async with app.run_test(size=(width, 24)) as pilot:
        await sync(pilot)
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        keys = footer_keys(app)
        for key in keys:  # laid out inside the footer, none under the palette or past the edge
            assert key.region.width > 0, key.description
            assert key.region.right <= right_edge(app, key), (key.description, key.region)
        actions = [key.action for key in keys]
        assert "app.help" in actions or "help" in actions
        assert "quit" in actions
        if width >= 160:  # room for every key
            assert {"new", "open", "verb('start')", "verb('stop')", "verb('delete')", "filter"} <= set(actions)
        else:  # the keys kept are the most needed: New before Log out
            if "verb('logout')" in actions:
                assert "new" in actions


async def test_a_narrower_terminal_recomposes_the_footer(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(160, 24)) as pilot:
        await sync(pilot)
        wide = [key.action for key in footer_keys(app)]
        await pilot.resize_terminal(60, 24)
        await sync(pilot)
        await pilot.pause()
        narrow = [key.action for key in footer_keys(app)]
        assert len(narrow) < len(wide)
        assert "help" in narrow and "quit" in narrow
        assert all(key.region.right <= right_edge(app, key) <= 60 for key in footer_keys(app))


def table_line(app: Any, y: int) -> str:
    """Line ``y`` of the sessions table as drawn (0 = its header)."""
    table = app.screen.query_one(SessionsTable)
    return "".join(segment.text for segment in table.render_line(y))


LONG = "north-region-customer-support-desk"  # 34 characters


async def test_the_name_column_takes_the_spare_width(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.ready.wait()
        await app.service.create_session(spec(LONG, start=False))
        await app.service.create_session(spec("kiosk", start=False))
        await sync(pilot)
        table = app.screen.query_one(SessionsTable)
        widths = dict((column.key, w) for column, w in table.columns_for(table.size.width))
        # Nothing in the short columns is long: each is as wide as its title (and sort sign).
        assert widths["messages"] == len("IN/OUT") + 2
        assert widths["reconnects"] == len("↻") + 2
        assert widths["name"] >= 20, widths
        await pilot.press("i")  # without the detail pane, the whole name shows
        await sync(pilot)
        assert any(LONG in table_line(app, y) for y in (1, 2))


async def test_sorting_by_a_column_the_width_hides_says_so(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(60, 24)) as pilot:
        await app.ready.wait()
        await app.service.create_session(spec("alpha", start=False))
        await sync(pilot)
        table = app.screen.query_one(SessionsTable)
        shown = {column.key for column, _ in table.columns_for(table.size.width)}
        assert "reconnects" not in shown
        for _ in range(10):  # sort by the next column until it is the hidden ↻
            if table.sort_column == "reconnects":
                break
            await pilot.press("o")
            await sync(pilot)
        assert table.sort_column == "reconnects"
        assert re.match(r" by (reconnects|↻) ▲ ", table_line(app, 0))  # in the name's place
        await pilot.press("O")
        await sync(pilot)
        assert re.match(r" by (reconnects|↻) ▼ ", table_line(app, 0))
        await pilot.resize_terminal(160, 24)  # the column itself is back, with the sign
        await sync(pilot)
        assert "NAME · by" not in table_line(app, 0) and "↻ ▼" in table_line(app, 0)


async def test_marks_the_filter_hides_are_counted_before_acting(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.ready.wait()
        for name in ("alpha", "beta", "gamma"):
            await app.service.create_session(spec(name, start=False))
        await sync(pilot)
        await pilot.press("asterisk")  # mark all three
        await pilot.press("slash")
        await pilot.press(*"alpha", "enter")
        await sync(pilot)
        assert row_names(app) == ["alpha"]
        assert "3 marked, 2 hidden" in plain(app.screen.query_one("#topbar"))
        await pilot.press("s")
        await sync(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        question = plain(app.screen.query_one("#confirm-question"))
        assert "Start 3 marked sessions?" in question
        assert "2 of them are hidden by the filter." in question
        await pilot.press("escape")
        await sync(pilot)
        assert all(find(app, name).status == Status.STOPPED for name in ("alpha", "beta", "gamma"))


async def test_one_marked_session_the_filter_hides_is_not_acted_on_unasked(make_app: AppFactory) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.ready.wait()
        for name in ("alpha", "beta"):
            await app.service.create_session(spec(name, start=False))
        await sync(pilot)
        await pilot.press("space")  # marks alpha (the first row)
        await pilot.press("slash", *"beta", "enter")
        await sync(pilot)
        assert row_names(app) == ["beta"]
        await pilot.press("s")  # Start asks nothing for one session, but this one is out of sight
        await sync(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "It is hidden by the filter." in plain(app.screen.query_one("#confirm-question"))
        await pilot.press("y")
        await wait_until(pilot, lambda: find(app, "alpha").status != Status.STOPPED, "alpha starts")
        assert find(app, "beta").status == Status.STOPPED  # the one in view was not marked
