"""Helpers for the tests of modules that send their own SQL (outbox, retention, …) on both
store backends, and for the cluster outbox tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from watui.config import Settings
from watui.machine import EventType
from watui.models import NewEvent, Session, SessionSettings, utcnow
from watui.webhooks import WebhookDispatcher, WebhookOptions

FAST = WebhookOptions(base_delay=0.05, max_delay=0.4, poll_interval=0.05, cluster_poll_interval=0.05,
                      shutdown_grace=0.5)


def hooked_session(sid: str, url: str, secret: str, owner: str = "alice") -> Session:
    now = utcnow()
    return Session(id=sid, name=sid, owner=owner, created_at=now, updated_at=now,
                   settings=SessionSettings.model_validate({"webhook_url": url, "webhook_secret": secret}))


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", engine="simulated", webhook_allow_private=True, **overrides)


def new_event(sid: str, i: int, kind: EventType = EventType.MESSAGE, *, at: datetime | None = None,
              owner: str = "alice") -> NewEvent:
    return NewEvent(type=kind, session_id=sid, owner=owner, payload={"i": i, "text": f"hello {i}"},
                    timestamp=at or utcnow())


async def eventually(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def drained(dispatcher: WebhookDispatcher) -> bool:
    return await dispatcher.pending_count() == 0 and dispatcher.in_flight == 0
