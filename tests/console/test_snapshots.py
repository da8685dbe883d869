"""Snapshot tests: what each screen looks like, stored as SVGs under ``snapshots/console/``.

Every scene is built through the service with the simulated engine on a fake clock, fixed
session ids and a fixed engine seed, so an SVG changes only when the UI does. Regenerate
with ``make snapshots-update`` and look at the result before committing it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from watui.clock import FakeClock
from watui.engines.simulated import SimulatedEngine
from watui.errors import EngineFailure
from watui.models import Session
from watui.widgets.messages import StateChanged

from .conftest import AppFactory, act, find, spec, sync

Pilot = Any
SnapCompare = Callable[..., bool]

LARGE = (120, 40)
SMALL = (80, 24)


async def every_status(pilot: Pilot, clock: FakeClock) -> dict[str, Session]:
    """One session in each status, with some history, as an admin would see a busy table."""
    app = pilot.app
    await app.ready.wait()
    svc = app.service
    sales = await svc.create_session(spec("sales-desk", description="main sales line"))
    support = await svc.create_session(spec("support", description="customer support"))
    warehouse = await svc.create_session(spec("warehouse", description="delivery updates",
                                              settings={"auto_reconnect": False}))
    await clock.advance(0.5)
    for session in (sales, support, warehouse):
        await svc.simulate(session.id, act("scan"))
    await clock.advance(1.0)
    for n in range(3):
        await svc.simulate(sales.id, act("message", chat="14155550100", text=f"Is order #{n + 1} ready?"))
    await clock.advance(150)
    await svc.simulate(support.id, act("message", chat="14155550111", text="Thanks, it works now"))
    await svc.simulate(warehouse.id, act("disconnect", reason="stream error"))
    failed = await svc.create_session(spec("ops-alerts", description="on-call alerts"))
    await svc.create_session(spec("front-desk", description="reception"))
    linking = await svc.create_session(spec("billing", description="invoices"))
    await clock.advance(0.5)
    await svc.simulate(failed.id, act("fail", reason="websocket closed: 503 from the server"))
    await svc.simulate(linking.id, act("scan"))  # connecting: the link takes a second
    await svc.create_session(spec("archive", description="old number", start=False))
    await svc.create_session(spec("kiosk", description="lobby tablet"))  # initializing
    await sync(pilot)
    return {s.name: s for s in app.state.sessions.values()}


def scene(clock: FakeClock, *keys: str, build: bool = True, select: str = "sales-desk",
          then: Callable[[Pilot], Awaitable[None]] | None = None) -> Callable[[Pilot], Awaitable[None]]:
    """Build the every-status table (unless ``build`` is false), highlight ``select``, press ``keys``."""

    async def run_before(pilot: Pilot) -> None:
        await pilot.app.ready.wait()
        if build:
            sessions = await every_status(pilot, clock)
            pilot.app.go_to_session(sessions[select].id)
            await sync(pilot)
        if keys:
            await pilot.press(*keys)
        if then is not None:
            await then(pilot)
        await sync(pilot)

    return run_before


def test_empty_state(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    assert snap_compare(make_app(), terminal_size=LARGE, run_before=scene(clock, build=False))


def test_table_every_status(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    assert snap_compare(make_app(), terminal_size=LARGE, run_before=scene(clock))


def test_detail_pane_failed_session(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    assert snap_compare(make_app(), terminal_size=LARGE, run_before=scene(clock, select="ops-alerts"))


def test_narrow_terminal(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    assert snap_compare(make_app(), terminal_size=SMALL, run_before=scene(clock, select="warehouse"))


def test_filter_active(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    assert snap_compare(make_app(), terminal_size=LARGE, run_before=scene(clock, "slash", *"conn"))


def test_confirm_delete(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    assert snap_compare(make_app(), terminal_size=LARGE, run_before=scene(clock, "d", select="support"))


def test_error_toast(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    async def wait_toast(pilot: Pilot) -> None:
        for _ in range(50):
            if pilot.app._notifications:
                return
            await pilot.pause()

    # ``x`` on the stopped "archive" row: the service refuses and the toast says why.
    assert snap_compare(make_app(), terminal_size=LARGE, run_before=scene(clock, "x", select="archive", then=wait_toast))


def test_help(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    assert snap_compare(make_app(), terminal_size=LARGE, run_before=scene(clock, "question_mark", build=False))


def test_new_session_modal(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    assert snap_compare(make_app(), terminal_size=LARGE, run_before=scene(clock, "n", build=False))


def _open_qr(clock: FakeClock) -> Callable[[Pilot], Awaitable[None]]:
    async def run_before(pilot: Pilot) -> None:
        sessions = await every_status(pilot, clock)
        pilot.app.open_session(sessions["front-desk"].id)
        await sync(pilot)

    return run_before


def test_qr_screen_large(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    assert snap_compare(make_app(), terminal_size=LARGE, run_before=_open_qr(clock))


def test_qr_screen_small_fallback(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    """Half blocks do not fit 80×24: sextants, with the text beside the code."""
    assert snap_compare(make_app(), terminal_size=SMALL, run_before=_open_qr(clock))


def test_qr_screen_too_small(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    """Not even sextants fit: the message says so in full, wrapped, and offers the phone number."""
    assert snap_compare(make_app(), terminal_size=(50, 16), run_before=_open_qr(clock))


def test_pairing_code(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        await app.ready.wait()
        session = await app.service.create_session(spec("front-desk", start=False))
        await sync(pilot)
        app.link_by_phone(session.id)
        await sync(pilot)
        await pilot.press(*"+14155550123", "enter")
        await sync(pilot, clock, 0.5)
        for _ in range(20):
            if find(app, "front-desk").pair_code:
                break
            await sync(pilot)
        await sync(pilot, clock, 5)

    assert snap_compare(make_app(), terminal_size=LARGE, run_before=run_before)


def _conversation(clock: FakeClock, engine: SimulatedEngine, *keys: str) -> Callable[[Pilot], Awaitable[None]]:
    """sales-desk answers its three customers' questions (one send fails), then ``keys``."""

    async def then(pilot: Pilot) -> None:
        app = pilot.app
        sales = find(app, "sales-desk")
        await sync(pilot)  # its log is read from the store first
        await clock.advance(30)
        await app.service.send_message(sales.id, "+14155550100", "Yes: orders #1 and #2 leave today, #3 on Monday")
        engine.fail_sends = "recipient 14155550199 is not on WhatsApp"
        with contextlib.suppress(EngineFailure):
            await app.service.send_message(sales.id, "+14155550199", "Your invoice is attached")
        engine.fail_sends = None
        await clock.advance(20)
        await app.service.simulate(sales.id, act("message", chat="14155550100", text="Great, thanks!"))
        await sync(pilot)
        if keys:
            await pilot.press(*keys)

    return then


def test_detail_pane_message_log(
    snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock, engine: SimulatedEngine
) -> None:
    assert snap_compare(make_app(), terminal_size=LARGE, run_before=scene(clock, then=_conversation(clock, engine)))


def test_details_screen_message_log(
    snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock, engine: SimulatedEngine
) -> None:
    # Full width: one line per message.
    assert snap_compare(make_app(), terminal_size=LARGE,
                        run_before=scene(clock, then=_conversation(clock, engine, "enter")))


def test_compose_modal_small(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    # 80x24: the box fits, the number typed, on to the text.
    assert snap_compare(make_app(), terminal_size=SMALL,
                        run_before=scene(clock, "m", *"+14155550100", "enter", *"Is the order ready?"))


def test_compose_modal_invalid_number(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    assert snap_compare(make_app(), terminal_size=LARGE, run_before=scene(clock, "m", *"555-01", "enter"))


# -- issue 10: the new screens, each at both sizes -------------------------------------------

SIZES = pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])


async def _logged_out(pilot: Pilot, clock: FakeClock) -> None:
    """Add a session whose phone unlinked it: its own badge, not a drop."""
    app = pilot.app
    old = await app.service.create_session(spec("old-phone", description="handed back"))
    await clock.advance(0.5)
    await app.service.simulate(old.id, act("scan"))
    await clock.advance(1.0)
    await app.service.simulate(old.id, act("logout"))
    await sync(pilot)


@SIZES
def test_logged_out_session(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock,
                            size: tuple[int, int]) -> None:
    async def then(pilot: Pilot) -> None:
        await _logged_out(pilot, clock)
        pilot.app.go_to_session(find(pilot.app, "old-phone").id)

    assert snap_compare(make_app(), terminal_size=size, run_before=scene(clock, then=then))


@SIZES
def test_session_event_log(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock,
                           size: tuple[int, int]) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=scene(clock, "e", then=_log_loaded))


@SIZES
def test_all_sessions_event_log_filtered(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock,
                                         size: tuple[int, int]) -> None:
    assert snap_compare(make_app(), terminal_size=size,
                        run_before=scene(clock, "E", then=_then_keys("t", "slash", *"sales")))


@SIZES
def test_message_history(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock,
                         engine: SimulatedEngine, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(), terminal_size=size,
                        run_before=scene(clock, then=_conversation(clock, engine, "M")))


@SIZES
def test_bulk_confirm(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock,
                      size: tuple[int, int]) -> None:
    # Marked: sales-desk, support, warehouse (running) and archive (stopped: cannot stop).
    assert snap_compare(make_app(), terminal_size=size,
                        run_before=scene(clock, then=_mark_and("sales-desk", "support", "warehouse", "archive",
                                                               keys=("x",))))


@SIZES
def test_bulk_progress_and_marks_in_header(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock,
                                          size: tuple[int, int]) -> None:
    async def then(pilot: Pilot) -> None:
        from watui.console.verbs import Verb
        from watui.models import RestoreProgress
        from watui.widgets.messages import BulkProgress

        await pilot.press("space", "space", "space")
        pilot.app.manager.restore_progress = RestoreProgress(done=37, total=500)
        await pilot.pause(0.6)
        pilot.app.screen.post_message(BulkProgress(Verb.STOP, 40, 100))

    assert snap_compare(make_app(), terminal_size=size, run_before=scene(clock, select="archive", then=then))


@SIZES
def test_copy_menu(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock,
                   size: tuple[int, int]) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=scene(clock, "y"))


@SIZES
def test_new_session_name_taken(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock,
                                size: tuple[int, int]) -> None:
    async def then(pilot: Pilot) -> None:
        from .conftest import wait_until

        form = pilot.app.screen
        form.query_one("#new-name").value = "billing"
        form.query_one("#new-description").value = "second invoices line"
        await pilot.press("enter")
        await wait_until(pilot, lambda: form.query_one("#new-name-error").display, "the error on the name")

    assert snap_compare(make_app(), terminal_size=size, run_before=scene(clock, "n", then=then))


async def _log_loaded(pilot: Pilot) -> None:
    from .conftest import wait_until

    await wait_until(pilot, lambda: getattr(pilot.app.screen, "loaded", False), "the log is read")


def _then_keys(*keys: str) -> Callable[[Pilot], Awaitable[None]]:
    async def then(pilot: Pilot) -> None:
        await _log_loaded(pilot)
        await pilot.press(*keys)

    return then


def _mark_and(*names: str, keys: tuple[str, ...]) -> Callable[[Pilot], Awaitable[None]]:
    async def then(pilot: Pilot) -> None:
        app = pilot.app
        for name in names:
            app.go_to_session(find(app, name).id)
            await pilot.press("space")
        await pilot.press(*keys)

    return then


async def _on_nodes(pilot: Pilot) -> None:
    """Cluster mode: each running session on one of two nodes (as the nodes' leases say), the
    others on none. Put into the console's state the way a refresh from the service would."""
    app = pilot.app
    running = sorted((s for s in app.state.sessions.values() if s.running), key=lambda s: s.name)
    for n, session in enumerate(running):
        app.state.put(session.model_copy(update={"node_id": ("node-a", "node-b")[n % 2]}))
    app.post_to_screens(StateChanged(frozenset(s.id for s in running)))


@SIZES
def test_table_with_nodes(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock,
                          size: tuple[int, int]) -> None:
    """The NODE column (only in a cluster) and the node in the detail pane."""
    assert snap_compare(make_app(), terminal_size=size, run_before=scene(clock, then=_on_nodes))


@SIZES
def test_marks_the_filter_hides(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock,
                                size: tuple[int, int]) -> None:
    # Three marked, then a filter that shows one of them: the header and the question count
    # the two out of sight.
    assert snap_compare(make_app(), terminal_size=size,
                        run_before=scene(clock, then=_mark_and("sales-desk", "support", "warehouse",
                                                               keys=("slash", *"sales", "enter", "x"))))


def test_sorted_by_a_hidden_column(snap_compare: SnapCompare, make_app: AppFactory, clock: FakeClock) -> None:
    # At 60 columns the ↻ column is left out; sorted by it, the header says so where NAME was.
    assert snap_compare(make_app(), terminal_size=(60, 24),
                        run_before=scene(clock, then=_sort_by("reconnects")))


def _sort_by(column: str) -> Callable[[Pilot], Awaitable[None]]:
    async def then(pilot: Pilot) -> None:
        from watui.widgets.sessions_table import SessionsTable

        table = pilot.app.screen.query_one(SessionsTable)
        for _ in range(10):
            if table.sort_column == column:
                pilot.app.clear_notifications()  # the "Sorted by …" toasts of the way here
                await pilot.pause()
                return
            await pilot.press("o")
        raise AssertionError(f"never sorted by {column}")

    return then
