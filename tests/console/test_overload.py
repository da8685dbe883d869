"""The console shows the node's refusal when it is at capacity (issue 19): the same words in
process and attached (``503 OVERLOADED`` read back from the server), for one start, a bulk
start (each session answered for itself) and the new-session form."""

from __future__ import annotations

from watui.clock import FakeClock
from watui.config import Settings
from watui.machine import Status
from watui.screens.new_session import NewSessionScreen

from .attach_helpers import wait_for
from .conftest import AppFactory, find, plain, spec, sync, wait_until
from .keys import toasts

AT_CAPACITY = "The server is at capacity (2 sessions running, WATUI_NODE_CAPACITY=2). Stop one, or try again in 30 s."


async def test_starts_past_capacity_are_refused_with_the_reason(
    make_app: AppFactory, settings: Settings, clock: FakeClock
) -> None:
    app = make_app(settings_=settings.model_copy(update={"node_capacity": 2}))
    async with app.run_test(size=(120, 40)) as pilot:
        await sync(pilot)
        await app.service.create_session(spec("alpha"))
        for name in ("bravo", "charlie", "delta"):
            await app.service.create_session(spec(name, start=False))
        await sync(pilot, clock, 0.5)

        # A bulk start of the three stopped ones: one fits, two are refused, each for itself.
        app.go_to_session(find(app, "bravo").id)
        await pilot.press("space", "space", "space", "s")
        await pilot.press("y")
        await wait_until(pilot, lambda: any("Start: 1 done, 2 refused" in t for t in toasts(app)), "the summary")
        assert any(f"Refused: {AT_CAPACITY} (2)" in t for t in toasts(app)), toasts(app)
        started = [n for n in ("bravo", "charlie", "delta") if find(app, n).status is not Status.STOPPED]
        assert len(started) == 1
        await sync(pilot, clock, 0.5)
        assert find(app, started[0]).status is Status.QR_READY, "what was accepted runs"

        # One more, alone: the toast names it and gives the reason.
        waiting = next(n for n in ("bravo", "charlie", "delta") if n not in started)
        await pilot.press("escape")  # the marks off
        app.go_to_session(find(app, waiting).id)
        await pilot.press("s")
        await wait_until(pilot, lambda: any(f"Start '{waiting}' refused: {AT_CAPACITY}" in t for t in toasts(app)),
                         "the refusal")
        assert find(app, waiting).status is Status.STOPPED

        # The new-session form keeps what was typed and says why.
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, NewSessionScreen)
        form.query_one("#new-name").value = "echo"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_for(pilot, lambda: AT_CAPACITY in plain(form.query_one("#new-error")), "the form's refusal")
        await pilot.press("escape")

        # Stopping one makes room again.
        app.go_to_session(find(app, "alpha").id)
        await pilot.press("x")
        await wait_until(pilot, lambda: find(app, "alpha").status is Status.STOPPED, "alpha stopped")
        app.go_to_session(find(app, waiting).id)
        await pilot.press("s")
        await wait_until(pilot, lambda: find(app, waiting).status is not Status.STOPPED, "started after all")
        assert "echo" not in {s.name for s in app.state.sessions.values()}
