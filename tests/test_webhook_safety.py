"""Webhooks that cannot be turned against the server or its other users (issue 11, items 2,
4 and 9): the guard on the address actually connected to, redirects left alone, rows that can
never go out dead-lettered instead of retried for ever, and one owner's slow receivers not
holding up another owner's deliveries."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from test_webhooks import (
    drained,
    eventually,
    hooks,
    make_settings,
    open_manager,
    spec,
)
from webhook_receiver import Receiver

from watui.models import Caller
from watui.webhooks import WebhookOptions

pytestmark = pytest.mark.timeout(60)


async def test_the_guard_checks_the_address_connected_to(tmp_path: Path, receivers: Callable[..., Receiver]) -> None:
    """The manager takes any URL (the HTTP routes check them up front); on delivery, the name
    is resolved and the address it resolves to is checked, so `localhost` never gets a byte."""
    receiver = receivers()
    await receiver.start()
    manager = await open_manager(make_settings(tmp_path / "data", webhook_allow_private=False))
    try:
        admin = manager.service(Caller.local_admin())
        port_url = f"http://localhost:{receiver.port}/hook"
        session = await admin.create_session(spec("probe", start=False, settings=hooks(webhook_url=port_url)))

        async def refused() -> bool:
            page = await admin.list_webhook_deliveries(session.id)
            return bool(page.deliveries) and page.deliveries[0].status == "failed"

        await eventually(refused, what="the delivery to be refused")
        delivery = (await admin.list_webhook_deliveries(session.id)).deliveries[0]
        assert delivery.last_error is not None and delivery.last_error.startswith("forbidden address: 127.0.0.1")
        assert delivery.attempts == 1, "a forbidden target is final, not retried"
        assert receiver.requests == []
    finally:
        await manager.aclose()


async def test_redirects_are_not_followed(tmp_path: Path, receivers: Callable[..., Receiver]) -> None:
    target = receivers()
    await target.start()
    redirecting = receivers(respond=lambda request, n: 307)
    await redirecting.start()
    manager = await open_manager(make_settings(tmp_path / "data"))
    try:
        admin = manager.service(Caller.local_admin())
        session = await admin.create_session(spec("r", start=False, settings=hooks(webhook_url=redirecting.url())))

        async def settled() -> bool:
            page = await admin.list_webhook_deliveries(session.id)
            return bool(page.deliveries) and page.deliveries[0].status == "failed"

        await eventually(settled, what="the 307 to be recorded")
        assert len(redirecting.requests) == 1 and target.requests == []
    finally:
        await manager.aclose()


async def test_a_row_that_can_never_go_out_is_dead_lettered_not_retried(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    """A bad secret stored by an older version (which let `whsec_` + 25 × `A` through): every
    delivery would fail for ever, even after the session is deleted and the server restarted."""
    receiver = receivers()  # not listening: rows stay pending
    settings = make_settings(tmp_path / "data")
    manager = await open_manager(settings)
    admin = manager.service(Caller.local_admin())
    session = await admin.create_session(spec("bad", start=False, settings=hooks(webhook_url=receiver.url())))
    await admin.start(session.id)
    await admin.stop(session.id)
    await manager.aclose()

    bad = "whsec_" + "A" * 25
    db = sqlite3.connect(settings.db_path)
    with db:
        db.execute("UPDATE sessions SET doc = json_set(doc, '$.settings.webhook_secret', ?)", (bad,))
        db.execute("UPDATE webhook_deliveries SET secret = ?", (bad,))
    db.close()

    await receiver.start()
    manager = await open_manager(settings, restore=False)  # starts: a stored value never stops it
    admin = manager.service(Caller.local_admin())
    await admin.delete(session.id)
    await manager.aclose()

    manager = await open_manager(settings, restore=False)
    try:
        await eventually(lambda: drained(manager), what="every row to settle")
        rows = await manager.store.fetchall("SELECT status, attempts, last_error FROM webhook_deliveries")
        assert rows and all(r[0] == "dead" for r in rows), rows
        assert all(r[2].startswith("undeliverable: ") for r in rows), rows
        attempts = await manager.store.fetchall("SELECT COUNT(*) FROM webhook_attempts")
        await asyncio.sleep(0.5)
        assert await manager.store.fetchall("SELECT COUNT(*) FROM webhook_attempts") == attempts, "no loop"
        assert receiver.requests == []
    finally:
        await manager.aclose()


async def test_one_owners_slow_receivers_do_not_delay_another_owner(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    """Owner `mallory` points 12 sessions at receivers that take 4 s to answer, enough to fill
    every slot of the dispatcher; owner `alice`'s deliveries still arrive within a second."""
    slow = receivers(delay=lambda request: 4.0)
    fast = receivers()
    await slow.start()
    await fast.start()
    manager = await open_manager(make_settings(tmp_path / "data", max_active_sessions_per_owner=50))
    assert manager.webhooks is not None
    manager.webhooks.options = WebhookOptions(
        base_delay=0.05, max_delay=0.4, poll_interval=0.05, shutdown_grace=0.2, timeout=10,
        max_in_flight=8, per_owner=8, per_session=4,
    )
    try:
        mallory = manager.service(Caller(owner="mallory"))
        for i in range(12):
            await mallory.create_session(spec(f"m{i}", settings=hooks(webhook_url=slow.url(f"/m{i}"))))
        await eventually(lambda: len(slow.requests) >= 8, what="mallory's receivers to hold every slot")
        alice = manager.service(Caller(owner="alice"))
        for i in range(3):
            await alice.create_session(spec(f"a{i}", settings=hooks(webhook_url=fast.url(f"/a{i}"))))
        await eventually(lambda: len(fast.requests) >= 6, timeout=10, what="alice's deliveries")
        await asyncio.sleep(1.0)
        lags = []
        for request in fast.requests:
            sent = datetime.fromisoformat(request.json()["timestamp"].replace("Z", "+00:00"))
            lags.append((request.received_at - sent).total_seconds())
        assert max(lags) < 1.0, lags
        assert len(slow.requests) < 12 * 2, "mallory still gets only her share"
    finally:
        await manager.aclose()


async def test_a_url_password_never_reaches_the_log(
    tmp_path: Path, receivers: Callable[..., Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    receiver = receivers(respond=lambda request, n: 503 if n == 1 else 204)
    await receiver.start()
    manager = await open_manager(make_settings(tmp_path / "data"))
    try:
        admin = manager.service(Caller.local_admin())
        url = receiver.url("/hook").replace("http://", "http://hooker:pa55-w0rd-x@")
        # INFO: the level `watui serve` logs at (httpx logs every request's URL there).
        with caplog.at_level(logging.INFO):
            await admin.create_session(spec("creds", start=False, settings=hooks(webhook_url=url)))
            await eventually(lambda: len(receiver.requests) >= 2, what="a retry and a delivery")
            await eventually(lambda: drained(manager), what="the outbox to drain")
        assert receiver.requests[-1].headers["authorization"].startswith("Basic ")
        assert "pa55-w0rd-x" not in caplog.text
        assert "hooker:***@" in caplog.text, "the requests are logged, masked"
    finally:
        await manager.aclose()
