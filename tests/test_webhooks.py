"""Webhooks, end to end: a real HTTP receiver on loopback, the real clock, real sockets.

The receiver is a small asyncio HTTP/1.1 server whose answer the test chooses per request
(503, 204, 400, a slow answer) and which can be "down" (nothing listening: connection
refused). Every request it records is verified with the ``standardwebhooks`` library.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError
from webhook_receiver import Receiver, Request

from watui.clock import RealClock
from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.machine import EventType
from watui.manager import ScopedService, SessionManager
from watui.models import Caller, SessionCreate, SessionSettings, SessionUpdate
from watui.server.app import create_app
from watui.stores.sqlite import Store
from watui.webhooks import SERVER_SECRET_FILE, WebhookOptions

REPO = Path(__file__).resolve().parents[1]
FAST = WebhookOptions(base_delay=0.05, max_delay=0.4, poll_interval=0.05, shutdown_grace=0.5)

pytestmark = pytest.mark.timeout(60)


# ==================================================================== fixtures


def hooks(**values: Any) -> SessionSettings:
    return SessionSettings.model_validate(values)


def spec(name: str, **values: Any) -> SessionCreate:
    return SessionCreate.model_validate({"name": name, **values})


def patch(**values: Any) -> SessionUpdate:
    return SessionUpdate.model_validate(values)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    # Receivers here are on loopback, which webhooks may reach only when the operator allows it.
    overrides.setdefault("webhook_allow_private", True)
    return Settings(data_dir=data_dir, engine="simulated", sqlite_synchronous="NORMAL", **overrides)


async def open_manager(settings: Settings, *, restore: bool = True) -> SessionManager:
    engine = SimulatedEngine(clock=RealClock(), connect_latency=0.0, link_latency=0.0, seed="hooks")
    manager = await SessionManager.open(settings, engine=engine, clock=RealClock(), restore=restore)
    assert manager.webhooks is not None
    manager.webhooks.options = FAST
    return manager


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[SessionManager]:
    manager = await open_manager(make_settings(tmp_path / "data"))
    yield manager
    await manager.aclose()


@pytest.fixture
def admin(manager: SessionManager) -> ScopedService:
    return manager.service(Caller.local_admin())


async def eventually(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def drained(manager: SessionManager) -> bool:
    assert manager.webhooks is not None
    return await manager.webhooks.pending_count() == 0 and manager.webhooks.in_flight == 0


async def linked_session(admin: ScopedService, manager: SessionManager, name: str, messages: int,
                         settings: SessionSettings) -> str:
    """A session that links and receives ``messages`` messages: a dozen kinds of event."""
    session = await admin.create_session(spec(name, settings=settings))
    await eventually(lambda: manager.engine.phone(session.id).current_code is not None,  # type: ignore[attr-defined]
                     what="a QR code")
    await manager.drain(session.id)
    manager.engine.phone(session.id).scan()  # type: ignore[attr-defined]
    await eventually(lambda: manager.engine.phone(session.id).state == "connected",  # type: ignore[attr-defined]
                     what="connected")
    await manager.drain(session.id)
    for i in range(messages):
        manager.engine.phone(session.id).receive("14155550100", f"hello {i}")  # type: ignore[attr-defined]
    await manager.drain(session.id)
    return session.id


def verify(request: Request, secret: str) -> dict[str, Any]:
    data: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return data


# ==================================================================== tests


async def test_down_then_503_then_204_delivers_every_event_once_up(
    manager: SessionManager, admin: ScopedService, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers(respond=lambda request, n: 503 if n <= 4 else 204)
    ids = [
        await linked_session(admin, manager, name, 3, hooks(webhook_url=receiver.url(f"/{name}")))
        for name in ("alpha", "bravo")
    ]
    secrets = {sid: (await admin.get_session(sid)).settings.webhook_secret for sid in ids}
    assert all(s and s.startswith("whsec_") for s in secrets.values())

    # Down: nothing listens. Attempts fail with connection refused and are logged.
    async def refused_logged() -> bool:
        page = await admin.list_webhook_deliveries(ids[0], limit=100)
        return any(a.status_code is None and a.error for d in page.deliveries for a in d.attempt_log)

    await eventually(refused_logged, what="a refused attempt in the log")
    assert receiver.requests == []

    await receiver.start()  # up: the first four answers are 503, then 204
    await eventually(lambda: drained(manager), what="the outbox to drain")

    events = await manager.store.read_events(limit=10_000)
    assert len(events) >= 2 * 8
    got = receiver.by_event()
    assert set(got) == {e.id for e in events}, "every event arrives"
    for event in events:
        requests = got[event.id]
        assert len({r.webhook_id for r in requests}) == 1, "retries keep their webhook-id"
        for r in requests:
            body = verify(r, secrets[event.session_id])  # type: ignore[arg-type]
            assert body["type"] == event.type.value and body["session_id"] == event.session_id
            assert body["timestamp"].endswith("Z") and r.path == "/" + ("alpha" if event.session_id == ids[0] else "bravo")
        assert [r.body for r in requests] == [requests[0].body] * len(requests), "same body each retry"
    assert len({rs[0].webhook_id for rs in got.values()}) == len(events), "one webhook-id per event"
    assert sum(len(rs) for rs in got.values()) >= len(events) + 4, "the 503s were retried"
    # A wrong secret does not verify.
    with pytest.raises(WebhookVerificationError):
        verify(receiver.requests[-1], "whsec_" + "A" * 32)

    # The attempts log shows the story: refused, 503, then 204, all under one webhook-id.
    pages = [await admin.list_webhook_deliveries(sid, limit=100) for sid in ids]
    deliveries = [d for p in pages for d in p.deliveries]
    assert sum(p.total for p in pages) == len(events)
    assert all(d.status == "delivered" and d.delivered_at and d.next_attempt_at is None for d in deliveries)
    codes = {a.status_code for d in deliveries for a in d.attempt_log}
    assert {None, 503, 204} <= codes
    for d in deliveries:
        assert [a.attempt for a in d.attempt_log] == list(range(1, d.attempts + 1))
        assert d.attempt_log[-1].status_code == 204
        assert len(got[d.event_id]) == sum(1 for a in d.attempt_log if a.status_code is not None)
    newest_first = [d.id for d in pages[0].deliveries]
    assert newest_first == sorted(newest_first, reverse=True)


async def test_other_4xx_fails_without_retry_but_429_retries(
    manager: SessionManager, admin: ScopedService, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers(respond=lambda request, n: 400 if request.path == "/bad" else (429 if n <= 2 else 204))
    await receiver.start()
    bad = await admin.create_session(spec("bad", start=False,
                                                   settings=hooks(webhook_url=receiver.url("/bad"))))
    await eventually(lambda: drained(manager), what="the outbox to drain")
    good = await admin.create_session(spec("good", start=False,
                                                    settings=hooks(webhook_url=receiver.url("/good"))))
    await admin.update_session(bad.id, patch(description="no event"))
    await admin.start(bad.id)
    await eventually(lambda: drained(manager), what="the outbox to drain")
    await asyncio.sleep(0.3)  # a few back-off periods: a retry would have happened by now

    page = await admin.list_webhook_deliveries(bad.id)
    assert page.total >= 3 and all(d.status == "failed" and d.attempts == 1 for d in page.deliveries)
    assert page.deliveries[0].last_status_code == 400 and "HTTP 400: nope" in (page.deliveries[0].last_error or "")
    bad_requests = [r for r in receiver.requests if r.path == "/bad"]
    assert len(bad_requests) == page.total, "a 400 is never retried"
    good_page = await admin.list_webhook_deliveries(good.id)
    assert [d.status for d in good_page.deliveries] == ["delivered"]
    assert [a.status_code for a in good_page.deliveries[0].attempt_log][-1] == 204


async def test_event_filter_and_no_url_means_no_delivery(
    manager: SessionManager, admin: ScopedService, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers()
    await receiver.start()
    only_messages = hooks(webhook_url=receiver.url("/m"), webhook_events=[EventType.MESSAGE])
    sid = await linked_session(admin, manager, "filtered", 2, only_messages)
    quiet = await linked_session(admin, manager, "quiet", 1, hooks())
    await eventually(lambda: drained(manager), what="the outbox to drain")
    types = [r.json()["type"] for r in receiver.requests]
    assert types == ["message", "message"]
    assert [r.json()["text"] for r in receiver.requests] == ["hello 0", "hello 1"]
    assert (await admin.list_webhook_deliveries(quiet)).total == 0
    # Turning the filter off (PATCH) takes effect for the next events.
    await admin.update_session(sid, patch(settings={"webhook_events": None}))
    await admin.stop(sid)
    await eventually(lambda: len(receiver.requests) == 3, what="the status event")
    assert receiver.requests[-1].json()["type"] == "status"


async def test_server_wide_url_and_secret_file(tmp_path: Path, receivers: Callable[..., Receiver]) -> None:
    receiver = receivers()
    await receiver.start()
    settings = make_settings(tmp_path / "data", webhook_url=receiver.url("/default"))
    manager = await open_manager(settings)
    try:
        admin = manager.service(Caller.local_admin())
        path = settings.data_dir / SERVER_SECRET_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        secret = path.read_text().strip()
        assert secret.startswith("whsec_")
        default = await admin.create_session(spec("default", start=False))
        own = receivers()
        await own.start()
        mine = await admin.create_session(spec(
            "own", start=False, settings=hooks(webhook_url=own.url("/own"))))
        await eventually(lambda: drained(manager), what="the outbox to drain")
        assert [verify(r, secret)["session_id"] for r in receiver.requests] == [default.id]
        own_secret = (await admin.get_session(mine.id)).settings.webhook_secret
        assert own_secret and own_secret != secret
        assert [verify(r, own_secret)["session_id"] for r in own.requests] == [mine.id]
        # The deleted event still goes out (the session is gone, its row is not).
        await admin.delete(default.id)
        await eventually(lambda: len(receiver.requests) == 2, what="the deleted event")
        assert verify(receiver.requests[-1], secret)["type"] == "deleted"
    finally:
        await manager.aclose()
    # The secret survives a restart.
    manager = await open_manager(settings)
    await manager.aclose()
    assert path.read_text().strip() == secret


async def test_slow_receiver_blocks_neither_the_engine_nor_other_sessions(
    manager: SessionManager, admin: ScopedService, receivers: Callable[..., Receiver]
) -> None:
    slow = receivers(delay=lambda request: 5.0)
    fast = receivers()
    await slow.start()
    await fast.start()
    assert manager.webhooks is not None
    manager.webhooks.options = WebhookOptions(base_delay=0.05, max_delay=0.4, poll_interval=0.05,
                                              shutdown_grace=0.2, max_in_flight=8, per_session=2,
                                              timeout=10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    stuck = await linked_session(admin, manager, "stuck", 30, hooks(webhook_url=slow.url()))
    others = [await linked_session(admin, manager, f"fine{i}", 5, hooks(webhook_url=fast.url(f"/{i}")))
              for i in range(4)]
    assert loop.time() - started < 2.5, "the engine never waits on a receiver"

    async def others_done() -> bool:
        pages = [await admin.list_webhook_deliveries(sid, limit=100) for sid in others]
        return all(d.status == "delivered" for p in pages for d in p.deliveries)

    await eventually(others_done, timeout=2.5, what="the other sessions' deliveries")
    assert loop.time() - started < 4.0
    assert len(slow.requests) <= 2, "the slow session holds at most its per-session slots"
    page = await admin.list_webhook_deliveries(stuck, limit=100)
    assert all(d.status == "pending" for d in page.deliveries)


async def test_outage_probes_one_at_a_time_and_recovery_drains_at_once(
    manager: SessionManager, admin: ScopedService, receivers: Callable[..., Receiver]
) -> None:
    """While a receiver is down only probes go to it, not the whole backlog on every back-off;
    the first success pulls every waiting row forward, even rows whose own retry is far off."""
    receiver = receivers()
    assert manager.webhooks is not None
    # A failed row waits 2.5-5 s for its own retry; the receiver is probed every 0.1-0.2 s.
    manager.webhooks.options = WebhookOptions(base_delay=5, max_delay=60, probe_max_delay=0.2,
                                              poll_interval=0.05, shutdown_grace=0.2)
    sid = await linked_session(admin, manager, "down", 40, hooks(webhook_url=receiver.url()))
    await asyncio.sleep(1.0)
    attempts = await manager.store.fetchall("SELECT COUNT(*) FROM webhook_attempts")
    backlog = (await admin.list_webhook_deliveries(sid, limit=100)).deliveries
    assert len(backlog) >= 45
    # At most per_session on the first try, then about one probe per 0.1-0.2 s: far fewer
    # than one attempt per delivery per back-off period.
    assert attempts[0][0] <= 4 + 12, attempts
    soon = datetime.now(UTC) + timedelta(seconds=1)
    far = [d for d in backlog if d.attempts and d.next_attempt_at and d.next_attempt_at > soon]
    assert len(far) >= 2, "rows tried during the outage wait seconds for their own retry"

    await receiver.start()
    started = asyncio.get_running_loop().time()
    await eventually(lambda: drained(manager), timeout=5, what="the backlog to drain")
    assert asyncio.get_running_loop().time() - started < 1.5, "not waiting for each row's own timer"
    assert set(receiver.by_event()) == {d.event_id for d in backlog}


async def test_clean_shutdown_cancels_a_hung_request_and_resends_it_after_restart(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    hung = receivers(delay=lambda request: 30.0)
    await hung.start()
    settings = make_settings(tmp_path / "data")
    manager = await open_manager(settings)
    admin = manager.service(Caller.local_admin())
    session = await admin.create_session(spec("hang", start=False, settings=hooks(webhook_url=hung.url())))
    await eventually(lambda: len(hung.requests) == 1, what="the request to hang")
    started = asyncio.get_running_loop().time()
    await manager.aclose()
    assert asyncio.get_running_loop().time() - started < 3, "shutdown does not wait on the receiver"
    first = hung.requests[0]

    hung.delay = lambda request: 0.0
    manager = await open_manager(settings, restore=False)
    try:
        await eventually(lambda: drained(manager), what="the resend")
        page = await manager.service(Caller.local_admin()).list_webhook_deliveries(session.id)
    finally:
        await manager.aclose()
    assert [r.webhook_id for r in hung.requests] == [first.webhook_id] * 2
    assert page.deliveries[0].status == "delivered" and page.deliveries[0].attempts == 1


async def test_gives_up_only_after_max_age(
    manager: SessionManager, admin: ScopedService, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers()  # never listens
    assert manager.webhooks is not None
    manager.webhooks.options = WebhookOptions(base_delay=0.05, max_delay=0.1, poll_interval=0.05,
                                              sweep_interval=0.05, max_age=0.6)
    session = await admin.create_session(spec(
        "gone", start=False, settings=hooks(webhook_url=receiver.url())))
    await asyncio.sleep(0.3)
    page = await admin.list_webhook_deliveries(session.id)
    assert page.deliveries[0].status == "pending" and page.deliveries[0].attempts >= 1

    async def dead() -> bool:
        return (await admin.list_webhook_deliveries(session.id)).deliveries[0].status == "dead"

    await eventually(dead, timeout=5, what="the delivery to be given up")
    d = (await admin.list_webhook_deliveries(session.id)).deliveries[0]
    assert (d.attempt_log[-1].at - d.created_at).total_seconds() >= 0.6 - 0.05
    assert d.attempts >= 3 and d.next_attempt_at is None and d.last_error


async def test_rows_held_back_by_a_down_receiver_expire_after_max_age(
    manager: SessionManager, admin: ScopedService, receivers: Callable[..., Receiver]
) -> None:
    """While a receiver is down most rows are never tried (only probes are); they still
    expire, as dead, once max_age (plus a short grace) has passed, not before."""
    receiver = receivers()  # never listens
    assert manager.webhooks is not None
    manager.webhooks.options = WebhookOptions(base_delay=0.1, max_delay=0.1, poll_interval=0.05,
                                              sweep_interval=0.05, max_age=0.5)
    sid = await linked_session(admin, manager, "held", 20, hooks(webhook_url=receiver.url()))
    await asyncio.sleep(0.2)
    page = await admin.list_webhook_deliveries(sid, limit=100)
    assert all(d.status == "pending" for d in page.deliveries)

    async def all_dead() -> bool:
        page = await admin.list_webhook_deliveries(sid, limit=100)
        return all(d.status == "dead" for d in page.deliveries)

    await eventually(all_dead, timeout=5, what="every row to expire")
    page = await admin.list_webhook_deliveries(sid, limit=100)
    swept = [d for d in page.deliveries if d.attempts == 0]
    assert swept and all(d.last_error == "expired before any attempt" for d in swept)
    assert all(d.next_attempt_at is None for d in page.deliveries)


async def test_route_lists_deliveries_for_the_owner_only(
    manager: SessionManager, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers()
    await receiver.start()
    _, alice_key = await manager.store.create_api_key("alice")
    _, bob_key = await manager.store.create_api_key("bob")
    alice = manager.service(Caller(owner="alice"))
    session = await alice.create_session(spec(
        "a", start=False, settings=hooks(webhook_url=receiver.url())))
    await eventually(lambda: drained(manager), what="the outbox to drain")
    app = create_app(manager)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, what="uvicorn")
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/v1/sessions/{session.id}/webhooks/deliveries"
        async with httpx.AsyncClient(timeout=10) as client:
            ok = await client.get(url, headers={"Authorization": f"Bearer {alice_key}"}, params={"limit": 5})
            assert ok.status_code == 200
            body = ok.json()
            assert body["total"] == 1
            [d] = body["deliveries"]
            assert d["status"] == "delivered" and d["event_type"] == "status" and d["webhook_id"].startswith("msg_")
            assert d["attempt_log"][0]["status_code"] == 204 and "secret" not in json.dumps(body)
            other = await client.get(url, headers={"Authorization": f"Bearer {bob_key}"})
            assert other.status_code == 404 and other.json()["error"]["code"] == "SESSION_NOT_FOUND"
            assert (await client.get(url)).status_code == 401
            bad = await client.get(url, headers={"Authorization": f"Bearer {alice_key}"}, params={"limit": 0})
            assert bad.status_code == 422
    finally:
        server.should_exit = True
        await task


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from watui.clock import RealClock
    from watui.config import Settings
    from watui.engines.simulated import SimulatedEngine
    from watui.manager import SessionManager
    from watui.models import Caller, SessionCreate, SessionSettings
    from watui.webhooks import WebhookOptions

    async def main():
        settings = Settings(data_dir=sys.argv[1], engine="simulated", webhook_allow_private=True)
        engine = SimulatedEngine(clock=RealClock(), connect_latency=0.0, link_latency=0.0)
        manager = await SessionManager.open(settings, engine=engine, clock=RealClock())
        manager.webhooks.options = WebhookOptions(base_delay=0.05, max_delay=0.2, poll_interval=0.05)
        admin = manager.service(Caller.local_admin())
        ids = []
        for i in range(4):
            s = await admin.create_session(SessionCreate(
                name=f"s{i}", settings=SessionSettings(webhook_url=sys.argv[2] + f"/{i}")))
            ids.append(s.id)
        print("ready", flush=True)
        n = 0
        while True:  # until killed: stop/start cycles, each a handful of events
            sid = ids[n % len(ids)]
            await admin.stop(sid)
            await admin.start(sid)
            n += 1
            await asyncio.sleep(0.005)

    asyncio.run(main())
    """
)


async def test_kill_9_mid_delivery_loses_nothing(tmp_path: Path, receivers: Callable[..., Receiver]) -> None:
    # The receiver is up but slow and flaky, so at the kill some requests are in flight, some
    # rows wait for a retry and some were never tried.
    receiver = receivers(respond=lambda request, n: 503 if n % 3 == 0 else 204, delay=lambda request: 0.05)
    await receiver.start()
    data_dir = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(data_dir), receiver.url(""),
        stdout=asyncio.subprocess.PIPE, env=env,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 20)
        assert line.strip() == b"ready"
        await eventually(lambda: len(receiver.requests) >= 40, what="deliveries before the kill")
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    at_kill = len(receiver.requests)

    # What the log holds is what must arrive: every committed event had its outbox row.
    store = await Store.open(data_dir / "watui.db")
    try:
        events = await store.read_events(limit=100_000)
        rows = await store.fetchall("SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status")
        outbox = await store.fetchall("SELECT COUNT(*) FROM webhook_deliveries")
    finally:
        await store.close()
    assert outbox[0][0] == len(events), "one outbox row per committed event"
    assert dict((r[0], r[1]) for r in rows).get("pending", 0) > 0, "the kill left work undone"

    receiver.respond = lambda request, n: 204
    manager = await open_manager(make_settings(data_dir), restore=False)  # no new events
    try:
        await eventually(lambda: drained(manager), what="the outbox to drain after restart")
        secrets = {s.id: s.settings.webhook_secret for s in manager.registry.sessions.values()}
        everything = await manager.store.read_events(limit=100_000)
    finally:
        await manager.aclose()
    got = receiver.by_event()
    assert {e.id for e in events} <= set(got), "no event committed before the kill is lost"
    assert {e.id for e in everything} == set(got)
    for event in everything:
        requests = got[event.id]
        assert len({r.webhook_id for r in requests}) == 1
        for r in requests:
            verify(r, secrets[event.session_id])  # type: ignore[arg-type]
    assert len(receiver.requests) > at_kill
