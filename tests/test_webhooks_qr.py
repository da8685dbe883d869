"""A ``qr`` webhook carries its code's PNG as ``qr_data``, drawn on demand and shared with
everyone else asking for that code; one delivered after its code expired carries the text alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from qr_helpers import scan_png
from webhook_receiver import Receiver

from watui import qr, qr_drawings
from watui.clock import RealClock
from watui.config import Settings
from watui.engines.simulated import SimulatedEngine
from watui.manager import SessionManager
from watui.models import Caller, SessionCreate
from watui.webhooks.outbox import Due
from watui.webhooks.sender import body_of, qr_data_of

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[SessionManager]:
    settings = Settings(data_dir=tmp_path / "data", engine="simulated", sqlite_synchronous="NORMAL",
                        webhook_allow_private=True)  # the receiver is on loopback
    engine = SimulatedEngine(clock=RealClock(), seed="qr-hooks")
    manager = await SessionManager.open(settings, engine=engine, clock=RealClock())
    yield manager
    await manager.aclose()


async def eventually(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def scan(data_url: str) -> str:
    return scan_png(qr.png_of_data_url(data_url))


async def test_a_qr_webhook_carries_the_png_drawn_once_for_everyone(
    manager: SessionManager, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers()
    await receiver.start()
    admin = manager.service(Caller.local_admin())
    session = await admin.create_session(SessionCreate.model_validate(
        {"name": "hooked", "settings": {"webhook_url": receiver.url()}}))

    def qr_body() -> dict[str, Any] | None:
        return next((r.json() for r in receiver.requests if r.json()["type"] == "qr"), None)

    body = await eventually(qr_body, "the qr webhook")
    assert body["session_id"] == session.id
    assert scan(body["qr_data"]) == body["qr_text"]
    drawn = qr_drawings.drawings.drawn
    live = await admin.get_qr(session.id)
    assert live.qr_text == body["qr_text"] and live.qr_data == body["qr_data"]
    assert qr_drawings.drawings.drawn == drawn, "GET .../qr took the webhook's drawing"


def due(payload: dict[str, Any], event_id: int = 7, session_id: str = "ses_due") -> Due:
    now = datetime.now(UTC)
    return Due(id=1, event_id=event_id, session_id=session_id, webhook_id="msg_1", url="http://x/",
               secret=None, attempts=3, created_at=now, event_type="qr", owner="o", event_ts=now,
               payload=json.dumps(payload))


async def test_a_late_qr_webhook_carries_the_text_alone() -> None:
    """A retry long after the code expired, or after a newer code of its session went by:
    nobody can scan it, so it is not drawn."""
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    drawn = qr_drawings.drawings.drawn
    expired = due({"qr_text": "expired-code", "expires_at": past})
    assert await qr_data_of(expired) is None
    body = json.loads(body_of(expired, None))
    assert body["qr_text"] == "expired-code" and "qr_data" not in body and body["id"] == 7

    qr_drawings.drawings.note("ses_late", 9, "newer-code")
    superseded = due({"qr_text": "older-code", "expires_at": future}, event_id=8, session_id="ses_late")
    assert await qr_data_of(superseded) is None
    assert qr_drawings.drawings.drawn == drawn

    live = due({"qr_text": "live-code", "expires_at": future}, event_id=10, session_id="ses_late")
    data = await qr_data_of(live)
    assert data is not None and scan(data) == "live-code"
    assert json.loads(body_of(live, data))["qr_data"] == data
