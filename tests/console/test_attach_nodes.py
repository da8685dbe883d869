"""Attach mode carries each session's ``node_id`` (cluster mode) from the server's JSON into
the console's sessions, on every read path: a page, the NDJSON bulk read, one session, a verb.

The answers are the server's own serialisation (``Session.public()`` and the bulk route's
line format) of sessions placed on nodes, served through an httpx transport: no server sets
``node_id`` yet (the cluster's lease manager will), and this is about what the client keeps.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx

from watui.machine import Status
from watui.models import Session, SessionSettings
from watui.remote import RemoteService
from watui.server.routes_bulk import _line

NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
SESSIONS = [
    Session(id="ses_a", name="a", owner="acme", status=Status.CONNECTED, node_id="node-a",
            created_at=NOW, updated_at=NOW),
    # A webhook secret is masked on the wire, which takes the client's slow parsing path.
    Session(id="ses_b", name="b", owner="acme", status=Status.QR_READY, node_id="node-b", created_at=NOW,
            updated_at=NOW, settings=SessionSettings(webhook_secret="whsec_" + "A" * 32)),
    Session(id="ses_c", name="c", owner="acme", created_at=NOW, updated_at=NOW),
]
BY_ID = {s.id: s for s in SESSIONS}


def _answer(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/v1/sessions":
        return httpx.Response(200, json={"sessions": [s.public() for s in SESSIONS], "total": 3})
    if path == "/v1/bulk/sessions":
        ids = json.loads(request.content).get("ids") or list(BY_ID)
        lines = "".join(_line(BY_ID[i]) + "\n" for i in ids)
        return httpx.Response(200, content=lines.encode(), headers={"content-type": "application/x-ndjson"})
    session_id = path.split("/")[3]
    return httpx.Response(200, json=BY_ID[session_id].public())


async def test_attach_keeps_the_node_of_each_session() -> None:
    service = RemoteService("http://node-a.test", "wat_key", transport=httpx.MockTransport(_answer))
    try:
        expected = {"ses_a": "node-a", "ses_b": "node-b", "ses_c": None}
        page = await service.list_sessions(limit=20)
        assert {s.id: s.node_id for s in page.sessions} == expected
        everything = await service.list_sessions(limit=None)
        assert {s.id: s.node_id for s in everything.sessions} == expected
        assert (await service.get_session("ses_b")).node_id == "node-b"
        assert (await service.start("ses_a")).node_id == "node-a"
    finally:
        await service.aclose()
