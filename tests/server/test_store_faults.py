"""A refused or failed write changes nothing (issue 11, items 6 and 7).

The faults are SQLite's own: ``PRAGMA max_page_count`` on the writer connection makes the
database full (``SQLITE_FULL``, as on a full disk), ``PRAGMA query_only`` makes every write
fail (``SQLITE_READONLY``). Nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
from server_helpers import api_client

from watui.server import BackgroundServer


def pragma(server: BackgroundServer, sql: str) -> list[Any]:
    """Run a PRAGMA on the store's writer connection (where the writes happen)."""
    assert server.manager is not None
    writer = server.manager.store.writer

    async def run() -> list[Any]:
        return await writer.execute_fetchall(sql)

    return server.call(run)


def names(client: httpx.Client) -> set[str]:
    listing = client.get("/v1/sessions", params={"limit": 100}).json()
    assert listing["total"] == len(listing["sessions"])
    return {s["name"] for s in listing["sessions"]}


def wait_status(client: httpx.Client, session_id: str, status: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (now := client.get(f"/v1/sessions/{session_id}").json()["status"]) != status:
        assert time.monotonic() < deadline, f"still {now}, never {status}"
        time.sleep(0.02)


def link(client: httpx.Client, session_id: str) -> None:
    """Play the phone: wait for the QR code, scan it, wait until connected."""
    wait_status(client, session_id, "qr_ready")
    assert client.post(f"/v1/sessions/{session_id}/simulate", json={"action": "scan"}).status_code == 200
    wait_status(client, session_id, "connected")


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "STORE_UNAVAILABLE"
    assert int(response.headers["Retry-After"]) > 0


async def test_concurrent_creates_over_the_limit_leave_nothing_behind(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server(max_active_sessions_per_owner=5)
    key = server.create_key("shop")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        answers = await asyncio.gather(*(
            client.post("/v1/sessions", json={"name": f"s{i:02d}", "start": True}) for i in range(50)
        ))
        codes = sorted(r.status_code for r in answers)
        assert codes == [201] * 5 + [409] * 45
        assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {"SESSION_LIMIT_REACHED"}
        listing = (await client.get("/v1/sessions", params={"limit": 100})).json()
    created = {r.json()["session_id"] for r in answers if r.status_code == 201}
    assert listing["total"] == 5
    assert {s["id"] for s in listing["sessions"]} == created


def test_a_full_database_refuses_creates_with_503_and_keeps_memory_and_disk_equal(
    start_server: Callable[..., BackgroundServer], tmp_path: Any,
) -> None:
    data = tmp_path / "full"
    server = start_server(data, max_active_sessions_per_owner=5)
    user = server.create_key("shop")
    with api_client(server.base_url, server.admin_key) as admin, api_client(server.base_url, user) as shop:
        assert admin.post("/v1/sessions", json={"name": "before", "start": False}).status_code == 201
        pages = pragma(server, "PRAGMA page_count")[0][0]
        pragma(server, f"PRAGMA max_page_count = {pages}")
        created = {"before"}
        for i in range(500):
            answer = admin.post("/v1/sessions", json={"name": f"s{i:03d}", "start": False})
            if answer.status_code != 201:
                break
            created.add(f"s{i:03d}")
        else:
            raise AssertionError("the database never filled up")
        assert_unavailable(answer)
        for i in range(10):  # refused starts must not hold the owner's active slots either
            assert_unavailable(shop.post("/v1/sessions", json={"name": f"x{i}", "start": True}))
        assert names(admin) == created
        assert admin.get("/v1/health").status_code == 200

        pragma(server, "PRAGMA max_page_count = 1073741823")  # space is back
        for i in range(5):
            answer = shop.post("/v1/sessions", json={"name": f"x{i}", "start": True})
            assert answer.status_code == 201, answer.text
        created |= {f"x{i}" for i in range(5)}
        assert names(admin) == created
    server.stop()

    again = start_server(data)  # what the disk holds is what memory showed
    with api_client(again.base_url, again.admin_key) as admin:
        assert names(admin) == created


def test_every_command_that_cannot_write_changes_nothing_and_recovers(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server()
    with api_client(server.base_url, server.admin_key) as client:
        linked = client.post("/v1/sessions", json={"name": "linked", "start": True}).json()["session_id"]
        link(client, linked)
        idle = client.post("/v1/sessions", json={"name": "idle", "start": False}).json()["session_id"]
        before = {sid: client.get(f"/v1/sessions/{sid}").json() for sid in (linked, idle)}

        pragma(server, "PRAGMA query_only = ON")
        assert_unavailable(client.post("/v1/sessions", json={"name": "new"}))
        assert_unavailable(client.patch(f"/v1/sessions/{idle}", json={"name": "renamed"}))
        assert_unavailable(client.post(f"/v1/sessions/{idle}/start"))
        assert_unavailable(client.post(f"/v1/sessions/{linked}/stop"))
        assert_unavailable(client.post(f"/v1/sessions/{linked}/logout"))
        assert_unavailable(client.delete(f"/v1/sessions/{linked}"))
        assert_unavailable(client.post(f"/v1/sessions/{linked}/messages", json={"to": "+14155550123", "text": "hi"}))
        after = {sid: client.get(f"/v1/sessions/{sid}").json() for sid in (linked, idle)}
        assert after == before
        assert names(client) == {"linked", "idle"}

        pragma(server, "PRAGMA query_only = OFF")
        # The refused rename gave its name back and kept the old one taken.
        assert client.post("/v1/sessions", json={"name": "idle"}).status_code == 409
        assert client.patch(f"/v1/sessions/{idle}", json={"name": "renamed"}).status_code == 200
        assert client.post(f"/v1/sessions/{idle}/start").json()["status"] == "initializing"
        sent = client.post(f"/v1/sessions/{linked}/messages", json={"to": "+14155550123", "text": "hi"})
        assert sent.status_code == 201, sent.text  # still linked and running after the refused stop
        assert client.get(f"/v1/sessions/{linked}/messages").json()["total"] == 1
        assert client.delete(f"/v1/sessions/{linked}").status_code == 204
        assert names(client) == {"renamed"}


def test_health_fails_once_the_store_can_never_write_again(start_server: Callable[..., BackgroundServer]) -> None:
    """A writer process that died (killed, out of memory) cannot be brought back without a
    restart: every write is refused with 503, and so is the health check, so a supervisor
    restarts watui. What was written stays readable."""
    server = start_server()
    assert server.manager is not None
    with api_client(server.base_url, server.admin_key) as client:
        assert client.post("/v1/sessions", json={"name": "kept", "start": False}).status_code == 201
        assert client.get("/v1/health").status_code == 200
        pid = server.manager.store.writer.pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (health := client.get("/v1/health")).status_code == 200:
            assert time.monotonic() < deadline, "health never noticed"
            time.sleep(0.02)
        assert_unavailable(health)
        assert "exit code -9" in health.json()["error"]["message"]
        assert_unavailable(client.post("/v1/sessions", json={"name": "lost"}))
        assert names(client) == {"kept"}
