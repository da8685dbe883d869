"""Retention never deletes a webhook delivery that is still pending (issue 21, "Data
lifecycle"), nor the event it sends, on either store; and its log line counts what it deleted.

The receiver is a real HTTP server on loopback (tests/webhook_receiver.py). It is down (nothing
listening: connection refused) while 20 deliveries queue up and retention runs with a period
far shorter than their age; the store or the whole manager is then closed and opened again
(a restart), the receiver comes up, and every one of the 20 must arrive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sql_helpers import FAST, drained, eventually, hooked_session, new_event, settings_for
from standardwebhooks import Webhook
from webhook_receiver import Receiver

from watui.clock import RealClock
from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.manager import SessionManager
from watui.manager.retention import Retention
from watui.models import Caller, SessionCreate, utcnow
from watui.stores.base import StoreProtocol
from watui.webhooks import WebhookDispatcher, list_deliveries, new_secret

pytestmark = pytest.mark.timeout(90)

RETENTION_LOG = "watui.manager.retention"


async def _attempted(store: StoreProtocol, session_id: str) -> bool:
    """Some delivery of ``session_id`` has been tried (and refused: its receiver is down)."""
    page = await list_deliveries(store, session_id, limit=100)
    return any(d.attempts for d in page.deliveries)


def _log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == RETENTION_LOG]


async def test_pending_deliveries_and_their_events_outlive_retention_across_a_restart(
    open_store: Callable[[], Any], tmp_path: Path, receivers: Callable[..., Receiver],
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = receivers()  # reserved, not listening: every attempt is refused
    done = receivers()
    await done.start()
    secret = new_secret()
    sessions = {
        "ses_done": hooked_session("ses_done", done.url(), new_secret()),
        "ses_hook": hooked_session("ses_hook", down.url(), secret),
    }
    # Events an hour past a one-hour retention.
    settings = settings_for(tmp_path, event_retention_days=1 / 24)
    old = utcnow() - timedelta(hours=2)

    store: StoreProtocol = await open_store()
    dispatcher = WebhookDispatcher(store, settings, sessions=sessions, clock=RealClock(), options=FAST)
    dispatcher.start()
    try:
        # In log order: 3 events delivered, 5 with no webhook, then 20 the receiver refuses.
        await store.append([new_event("ses_done", i, at=old) for i in range(3)])
        await eventually(lambda: len(done.requests) == 3, what="the first receiver's 3 deliveries")
        await store.append([new_event("ses_quiet", i, at=old) for i in range(5)])
        pending = await store.append([new_event("ses_hook", i, at=old) for i in range(20)])
        await eventually(lambda: _attempted(store, "ses_hook"), what="an attempt the receiver refused")
        assert await dispatcher.pending_count() == 20
    finally:
        await dispatcher.aclose()
    pending_page = await list_deliveries(store, "ses_hook", limit=100)
    assert pending_page.total == 20 and {d.status.value for d in pending_page.deliveries} == {"pending"}
    await store.close()

    # The restart: the store opens again, and retention's first pass runs at once.
    store = await open_store()
    retention = Retention(store, settings, RealClock())
    with caplog.at_level(logging.INFO, logger=RETENTION_LOG):
        retention.start()
        try:
            await eventually(lambda: _log_lines(caplog), what="the first pass")
            await asyncio.sleep(0.1)  # its last line
        finally:
            await retention.aclose()
    # It kept the 20 pending deliveries and their events; it deleted the 8 events before the
    # first one still to be sent, with the 3 finished deliveries; and it said so.
    assert await list_deliveries(store, "ses_hook", limit=100) == pending_page
    assert await store.read_events() == pending
    assert await store.oldest_event_id() == pending[0].id
    assert _log_lines(caplog) == [
        "retention pruned 8 events, 0 messages, 3 webhook deliveries",
        "retention kept 20 events past their retention for pending webhook deliveries",
    ]

    await down.start()
    dispatcher = WebhookDispatcher(store, settings, sessions=sessions, clock=RealClock(), options=FAST)
    dispatcher.start()
    try:
        await eventually(lambda: drained(dispatcher), what="all 20 to be delivered")
    finally:
        await dispatcher.aclose()
    by_event = down.by_event()
    assert sorted(by_event) == [e.id for e in pending]
    for event, requests in zip(pending, (by_event[e.id] for e in pending), strict=True):
        body = Webhook(secret).verify(requests[-1].body, requests[-1].headers)
        assert (body["id"], body["session_id"], body["i"]) == (event.id, "ses_hook", event.payload["i"])

    # Delivered now, they and their events go at the next pass, counted.
    pruned = await retention.prune()
    assert (pruned.events, pruned.messages, pruned.deliveries, pruned.held) == (20, 0, 20, 0)
    assert await store.read_events() == []


async def test_a_restarted_manager_sends_what_queued_under_a_short_retention(
    tmp_path: Path, receivers: Callable[..., Receiver], caplog: pytest.LogCaptureFixture,
) -> None:
    """The issue's report, end to end on the default store (SQLite): 20 deliveries pending for
    a receiver that is down, retention of one second (a pass every second), a restart."""
    receiver = receivers()
    settings = Settings(data_dir=tmp_path / "data", engine="simulated", sqlite_synchronous="NORMAL",
                        webhook_allow_private=True, event_retention_days=1 / 86400)

    async def open_manager() -> SessionManager:
        engine = SimulatedEngine(clock=RealClock(), connect_latency=0.0, link_latency=0.0, seed="retention")
        manager = await SessionManager.open(settings, engine=engine, clock=RealClock())
        assert manager.webhooks is not None
        manager.webhooks.options = FAST
        return manager

    manager = await open_manager()
    try:
        admin = manager.service(Caller.local_admin())
        created = [
            await admin.create_session(SessionCreate.model_validate(
                {"name": f"hooked {i}", "start": False, "settings": {"webhook_url": receiver.url()}}
            ))
            for i in range(20)
        ]
        secrets = {s.id: s.settings.webhook_secret for s in created}
        with caplog.at_level(logging.INFO, logger=RETENTION_LOG):
            # Every event is past its retention within a second, and passes run every second.
            await asyncio.sleep(2.5)
        assert manager.webhooks is not None
        assert await manager.webhooks.pending_count() == 20
        lines = _log_lines(caplog)  # (a first pass may have seen fewer of them old enough)
        assert lines and all(line.startswith("retention kept ") for line in lines)
        assert lines[-1] == "retention kept 20 events past their retention for pending webhook deliveries"
    finally:
        await manager.aclose()

    manager = await open_manager()
    try:
        assert manager.webhooks is not None
        assert await manager.webhooks.pending_count() == 20
        await receiver.start()
        webhooks = manager.webhooks
        await eventually(lambda: drained(webhooks), what="all 20 to be delivered")
    finally:
        await manager.aclose()
    assert len(receiver.requests) == 20
    got: set[str] = set()
    for request in receiver.requests:
        body = request.json()
        secret = secrets[body["session_id"]]
        assert secret is not None
        Webhook(secret).verify(request.body, request.headers)
        assert body["type"] == "status" and body["to"] == "stopped"
        got.add(body["session_id"])
    assert got == set(secrets)
