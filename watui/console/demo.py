"""Sample sessions for ``watui --demo``, made through the service like a user would.

Runs in the background once the console is up, so the table fills in live: a few phones
link, one is left waiting at its QR code, one is stopped, one fails, one is logged out from
the phone. Only seeds an empty store, so a demo data dir given twice keeps what it has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Container
from typing import Any

from watui.errors import WatuiError
from watui.machine import Status
from watui.models import SessionCreate, SimulateRequest
from watui.service import SessionService

WAIT_TIMEOUT = 10.0


async def wait_for(service: SessionService, session_id: str, statuses: Container[Status],
                   timeout: float = WAIT_TIMEOUT) -> bool:
    """Wait until the session reaches one of ``statuses`` (real clock; demo only)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            if (await service.get_session(session_id)).status in statuses:
                return True
        except WatuiError:
            return False
        await asyncio.sleep(0.05)
    return False


def _spec(name: str, description: str, **more: Any) -> SessionCreate:
    return SessionCreate.model_validate({"name": name, "description": description, **more})


def _act(action: str, **more: Any) -> SimulateRequest:
    return SimulateRequest.model_validate({"action": action, **more})


async def _linked(service: SessionService, name: str, description: str, messages: int = 0,
                  *, then: str | None = None, auto_reconnect: bool = True) -> None:
    session = await service.create_session(SessionCreate.model_validate(
        {"name": name, "description": description, "settings": {"auto_reconnect": auto_reconnect}}
    ))
    if not await wait_for(service, session.id, {Status.QR_READY}):
        return
    await service.simulate(session.id, _act("scan"))
    if not await wait_for(service, session.id, {Status.CONNECTED}):
        return
    for n in range(messages):
        await service.simulate(session.id, _act("message", chat="14155550100", text=f"Hello #{n + 1} from a customer"))
    if then is not None:
        await service.simulate(session.id, _act(then))


async def _failed(service: SessionService, name: str, description: str) -> None:
    session = await service.create_session(_spec(name, description))
    if await wait_for(service, session.id, {Status.QR_READY}):
        await service.simulate(session.id, _act("fail", reason="websocket closed: 503 from the server"))


async def seed_demo(service: SessionService) -> int:
    """Create the sample sessions if there are none; returns how many were made."""
    if (await service.list_sessions(limit=1)).total:
        return 0
    await service.create_session(_spec("archive", "old number, kept for records", start=False))
    await asyncio.gather(
        _linked(service, "sales-desk", "main sales line", messages=3),
        _linked(service, "support", "customer support", messages=5),
        _linked(service, "billing", "invoices and reminders", messages=1),
        _linked(service, "warehouse", "delivery updates", then="logout"),
        _failed(service, "ops-alerts", "on-call alerts"),
    )
    await service.create_session(_spec("front-desk", "reception, waiting to be linked"))
    return 7
