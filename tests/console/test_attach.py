"""``watui attach``: the console over a real ``watui serve`` on loopback (HTTP + SSE).

The server runs in a thread (``BackgroundServer``) or, where it must die, as a subprocess;
the console is the real app, driven with Textual's pilot.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from textual.widgets import Input

from watui.machine import Status
from watui.remote import LinkState, RemoteService
from watui.screens.compose import ComposeScreen
from watui.screens.confirm import ConfirmScreen
from watui.screens.pair_code import PairCodeScreen, PhonePrompt
from watui.screens.qr import QrScreen
from watui.widgets.qr_view import QrView
from watui.widgets.server_link import ServerLink
from watui.widgets.sessions_table import SessionsTable

from .attach_helpers import (
    HeldBackoff,
    api,
    attach,
    background_server,
    free_port,
    linked_session,
    serve_process,
    toasts,
    wait_for,
    wait_until,
)
from .conftest import plain, row_names


def names(app: object) -> set[str]:
    return {s.name for s in app.state.sessions.values()}  # type: ignore[attr-defined]


async def test_created_in_the_api_appears_in_the_console(tmp_path: Path) -> None:
    server = background_server(tmp_path / "data")
    try:
        service, app = await attach(server.base_url, server.admin_key)
        async with app.run_test(size=(120, 36)) as pilot, api(server.base_url, server.admin_key) as client:
            await app.ready.wait()
            link = app.screen.query_one(ServerLink)
            await wait_for(pilot, lambda: "connected" in plain(link), "the header says connected")
            assert server.base_url in plain(link)

            created = (await client.post("/sessions", json={"name": "billing"})).json()
            session_id = created["session_id"]
            await wait_for(pilot, lambda: "billing" in row_names(app), "billing in the table")
            await wait_for(pilot, lambda: app.state.sessions[session_id].status == Status.QR_READY,
                           "billing shows its QR code is up")

            await client.post(f"/sessions/{session_id}/simulate", json={"action": "scan"})
            await wait_for(pilot, lambda: app.state.sessions[session_id].status == Status.CONNECTED,
                           "billing connected in the console")
            assert app.state.sessions[session_id].phone_number
            # The detail pane's log comes from the server's event log.
            assert any(e.type.value == "connected" for e in app.state.recent(session_id))
        await service.aclose()
    finally:
        server.stop()


async def test_acting_in_the_console_is_visible_in_the_api(tmp_path: Path) -> None:
    server = background_server(tmp_path / "data")
    try:
        service, app = await attach(server.base_url, server.admin_key)
        async with app.run_test(size=(120, 36)) as pilot, api(server.base_url, server.admin_key) as client:
            await app.ready.wait()
            # New session through the console's form.
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.focused, Input), "the form, its name box focused")
            await pilot.press("ctrl+a", "ctrl+k", *"shop", "enter")  # replace the suggested name
            await wait_for(pilot, lambda: "shop" in names(app), "shop created")
            listed = (await client.get("/sessions")).json()["sessions"]
            assert [s["name"] for s in listed] == ["shop"]
            shop_id = listed[0]["id"]

            # Back to the table; stop it with x.
            while not isinstance(app.screen.focused, SessionsTable):
                await pilot.press("escape")
                await pilot.pause(0.05)
            await wait_for(pilot, lambda: app.state.sessions[shop_id].status == Status.QR_READY, "shop linking")
            await pilot.press("x")
            await wait_for(pilot, lambda: app.state.sessions[shop_id].status == Status.STOPPED, "shop stopped")
            assert (await client.get(f"/sessions/{shop_id}")).json()["status"] == "stopped"

            # Delete it, confirming.
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirm")
            await pilot.press("y")
            await wait_for(pilot, lambda: "shop" not in names(app), "shop gone from the console")
            assert (await client.get(f"/sessions/{shop_id}")).status_code == 404
        await service.aclose()
    finally:
        server.stop()


async def test_refusals_show_the_servers_own_message(tmp_path: Path) -> None:
    server = background_server(tmp_path / "data", max_active_sessions_per_owner=1)
    try:
        key = server.create_key("alice")
        async with api(server.base_url, key) as client:
            first = (await client.post("/sessions", json={"name": "one"})).json()["session"]
            second = (await client.post("/sessions", json={"name": "two", "start": False})).json()["session"]
            refusal = (await client.post(f"/sessions/{second['id']}/start")).json()["error"]
        assert refusal["code"] == "SESSION_LIMIT_REACHED"

        service, app = await attach(server.base_url, key)
        async with app.run_test(size=(120, 36)) as pilot:
            await app.ready.wait()
            await wait_for(pilot, lambda: {"one", "two"} <= names(app), "both sessions")
            app.go_to_session(second["id"])
            await pilot.press("s")
            await wait_for(pilot, lambda: any(m == refusal["message"] for _, m in toasts(app)),
                           "a toast with the server's message")
            assert app.state.sessions[first["id"]].status != Status.STOPPED
            assert app.state.sessions[second["id"]].status == Status.STOPPED
        await service.aclose()
    finally:
        server.stop()


async def test_a_killed_and_restarted_server_is_resumed_with_nothing_missed(tmp_path: Path) -> None:
    """kill -9 the server, restart it at the same address, change things while the console
    is held away: once back, the console shows every change, resumed by Last-Event-ID."""
    server = serve_process(tmp_path / "data", free_port()).start()
    backoff = HeldBackoff()
    try:
        service, app = await attach(server.base_url, server.admin_key, backoff=backoff)
        async with app.run_test(size=(120, 36)) as pilot, api(server.base_url, server.admin_key) as client:
            await app.ready.wait()
            before = (await client.post("/sessions", json={"name": "before"})).json()["session_id"]
            await wait_for(pilot, lambda: "before" in names(app), "the first session")

            backoff.hold()
            server.kill()
            link = app.screen.query_one(ServerLink)
            await wait_for(pilot, lambda: "reconnecting" in plain(link), "the header says reconnecting")
            server.start()
            await client.post(f"/sessions/{before}/stop")
            during = await linked_session(client, "during")
            assert "reconnecting" in plain(link), "all this while the console is away"
            backoff.release()

            await wait_for(pilot, lambda: "connected" in plain(link) and "during" in names(app),
                           "reconnected, with the session made while away")
            await wait_for(pilot, lambda: app.state.sessions[during].status == Status.CONNECTED, "during connected")
            assert app.state.sessions[before].status == Status.STOPPED
            log = (await client.get(f"/sessions/{during}/events")).json()["events"]
            assert [e.id for e in app.state.recent(during)] == [e["id"] for e in log]
            assert service.link.status.resyncs == 0, "resumed, not resynced"
        await service.aclose()
    finally:
        server.kill()


async def test_the_event_stream_skips_and_repeats_nothing_across_a_restart(tmp_path: Path) -> None:
    """The subscription alone, against the log: every id once, in order, across kill -9."""
    server = serve_process(tmp_path / "data", free_port()).start()
    backoff = HeldBackoff()
    service = await RemoteService.open(server.base_url, server.admin_key, backoff=backoff)
    seen: list[int] = []

    async def read() -> None:
        async for event in subscription:
            seen.append(event.id)

    try:
        subscription = service.subscribe()
        reader = asyncio.create_task(read())
        async with api(server.base_url, server.admin_key) as client:
            first = await linked_session(client, "first")
            backoff.hold()
            server.kill()
            await wait_until(lambda: service.link.status.state == LinkState.RECONNECTING, "reconnecting")
            server.start()
            await client.post(f"/sessions/{first}/logout")
            await linked_session(client, "second")
            backoff.release()
            # The restore brings "first" back in the background: events may still come, so
            # compare what was seen with the log up to the last id seen.
            log = [e["id"] for e in (await client.get("/events/log", params={"limit": 500})).json()["events"]]
            await wait_until(lambda: bool(seen) and seen[-1] >= log[-1], "the events made while away")
            got = list(seen)
            log = [e["id"] for e in (await client.get("/events/log", params={"limit": 500})).json()["events"]]
        assert got == [i for i in log if i <= got[-1]], "every event once, in order"
        assert subscription.last_id >= got[-1]
        reader.cancel()
    finally:
        await service.aclose()
        server.kill()


async def test_a_server_that_cannot_resume_is_resynced_from_a_fresh_listing(tmp_path: Path) -> None:
    """Another server comes up at the same address, with the same keys but an older log (a
    restored backup): the console's resume point is past its log, the server refuses it, and
    the console re-reads every session instead."""
    port = free_port()
    server = serve_process(tmp_path / "data", port).start()
    server.kill()
    shutil.copytree(tmp_path / "data", tmp_path / "backup")  # keys, no session, no event
    server.start()
    backup = serve_process(tmp_path / "backup", port)
    try:
        service, app = await attach(server.base_url, server.admin_key)
        async with app.run_test(size=(120, 36)) as pilot:
            await app.ready.wait()
            async with api(server.base_url, server.admin_key) as client:
                for name in ("a", "b", "c"):
                    await client.post("/sessions", json={"name": name})
            await wait_for(pilot, lambda: names(app) == {"a", "b", "c"}, "three sessions")
            server.kill()
            backup.start()
            async with api(backup.base_url, backup.admin_key) as client:
                await client.post("/sessions", json={"name": "fresh", "start": False})
            await wait_for(pilot, lambda: names(app) == {"fresh"}, "only the restored server's session")
            assert service.link.status.resyncs == 1
        await service.aclose()
    finally:
        server.kill()
        backup.kill()


def test_the_link_line_shows_the_reason_as_plain_text() -> None:
    """The reason a link is down comes from the network or the server: never markup, and no
    escape sequence reaches the terminal."""
    from watui.remote import LinkState, LinkStatus
    from watui.widgets.server_link import describe

    down = LinkStatus("http://10.0.0.5:8080", LinkState.RECONNECTING, "[bold]Invalid[/] key \x1b[31m", 3,
                      as_of=datetime(2026, 11, 21, 9, 31, 2, tzinfo=UTC))
    text = describe(down)
    assert text.plain == ("server http://10.0.0.5:8080  ✖ unreachable · data as of 09:31:02 UTC · "
                          "reconnecting (attempt 3): [bold]Invalid[/] key ?[31m")
    assert describe(LinkStatus("http://h:1", LinkState.CONNECTED)).plain == "server http://h:1  ● connected"


async def test_linking_and_messaging_screens_work_attached(tmp_path: Path) -> None:
    """The QR screen, the phone scanning it (demo key), the compose box and the pairing-code
    screen: each over the server's API."""
    server = background_server(tmp_path / "data")
    try:
        service, app = await attach(server.base_url, server.admin_key)
        async with app.run_test(size=(120, 40)) as pilot, api(server.base_url, server.admin_key) as client:
            await app.ready.wait()
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.focused, Input), "the new-session form")
            await pilot.press("ctrl+a", "ctrl+k", *"linked", "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, QrScreen) and bool(app.screen.qr_text),
                           "the QR screen with a code from the server")
            qr_screen = app.screen
            assert isinstance(qr_screen, QrScreen)
            session_id = qr_screen.session_id
            live = (await client.get(f"/sessions/{session_id}/qr")).json()
            assert qr_screen.qr_text == live["qr_text"]
            assert qr_screen.query_one(QrView).payload == live["qr_text"], "drawn"
            await pilot.press("c")  # DEMO: the phone scans
            await wait_for(pilot, lambda: not isinstance(app.screen, QrScreen), "the QR screen closes when linked")
            assert app.state.sessions[session_id].status == Status.CONNECTED
            assert any(title == "Phone linked" for title, _ in toasts(app))

            app.go_to_session(session_id)
            await pilot.press("m")
            await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen), "the compose box")
            app.screen.query_one("#compose-to", Input).value = "+14155550123"
            app.screen.query_one("#compose-text", Input).value = "hello over HTTP"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: any(t == "Message sent" for t, _ in toasts(app)), "sent")
            sent = (await client.get(f"/sessions/{session_id}/messages")).json()["messages"]
            assert [m["text"] for m in sent] == ["hello over HTTP"]

            other = (await client.post("/sessions", json={"name": "by-phone", "start": False})).json()
            await wait_for(pilot, lambda: other["session_id"] in app.state.sessions, "by-phone listed")
            app.go_to_session(other["session_id"])
            await pilot.press("p")
            await wait_for(pilot, lambda: isinstance(app.screen, PhonePrompt), "the phone number prompt")
            await pilot.press(*"+14155550199", "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, PairCodeScreen) and bool(app.screen.code),
                           "the pairing code from the server")
            code = (await client.get(f"/sessions/{other['session_id']}")).json()["pair_code"]
            assert app.screen.code == code  # type: ignore[attr-defined]
        await service.aclose()
    finally:
        server.stop()


async def test_a_resume_past_retention_is_resynced_from_a_fresh_listing(tmp_path: Path) -> None:
    """The console is away longer than the server keeps events (410 EVENTS_EXPIRED): it
    follows the live stream again and re-reads every session, so what it missed shows."""
    retention = {"WATUI_EVENT_RETENTION_DAYS": str(3 / 86400)}  # three seconds
    server = serve_process(tmp_path / "data", free_port(), **retention).start()
    backoff = HeldBackoff()
    try:
        service, app = await attach(server.base_url, server.admin_key, backoff=backoff)
        async with app.run_test(size=(120, 36)) as pilot, api(server.base_url, server.admin_key) as client:
            await app.ready.wait()
            await client.post("/sessions", json={"name": "seen", "start": False})
            await wait_for(pilot, lambda: "seen" in names(app), "the first session")
            backoff.hold()
            server.kill()
            await wait_for(pilot, lambda: service.link.status.state == LinkState.RECONNECTING, "away")
            server.start()
            await client.post("/sessions", json={"name": "missed", "start": False})

            async def expired() -> bool:
                async with client.stream("GET", "/events", headers={"Last-Event-ID": "1"}) as answer:
                    return answer.status_code == 410

            deadline = time.monotonic() + 20
            while not await expired():  # the server prunes what is older than three seconds
                assert time.monotonic() < deadline, "the events never expired"
                await asyncio.sleep(0.25)
            backoff.release()
            await wait_for(pilot, lambda: names(app) == {"seen", "missed"}, "a fresh listing")
            assert service.link.status.resyncs == 1
            assert service.link.status.state == LinkState.CONNECTED
        await service.aclose()
    finally:
        server.kill()


async def test_the_log_screens_show_the_history_attached(tmp_path: Path) -> None:
    """``e`` and ``E`` over a server: the whole history, not "0 lines" and a refusal (the
    log screen reads 1,000 events at a time; the API gives 500: the client pages)."""
    from watui.screens.log import LogScreen
    from watui.widgets.log_view import LogView

    server = background_server(tmp_path / "data")
    try:
        service, app = await attach(server.base_url, server.admin_key)
        async with app.run_test(size=(120, 36)) as pilot, api(server.base_url, server.admin_key) as client:
            await app.ready.wait()
            session_id = await linked_session(client, "logged")
            await wait_for(pilot, lambda: "logged" in names(app), "the session")
            log = (await client.get("/events/log", params={"limit": 500})).json()["events"]
            app.go_to_session(session_id)
            for key, ids in (("e", [e["id"] for e in log if e["session_id"] == session_id]),
                             ("E", [e["id"] for e in log])):
                await pilot.press(key)
                await wait_for(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.loaded, key)
                assert [line.key for line in app.screen.query_one(LogView).lines][: len(ids)] == ids, key
                assert not toasts(app), toasts(app)
                await pilot.press("escape")
        await service.aclose()
    finally:
        server.stop()
