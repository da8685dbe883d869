"""``GET /v1/engine/hosts`` and a host crash, over real HTTP, with real engine host processes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from serve_process import ServerProcess
from server_helpers import api_client, decode, read_until

from watui.server import BackgroundServer


def poll(client: httpx.Client, url: str, done: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(url).json()
        if done(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_hosts_route_and_a_killed_host_over_http(start_server: Callable[..., BackgroundServer]) -> None:
    server = start_server(engine_factory=None, engine_isolation="process",
                          reconnect_base_delay=0.1, reconnect_max_delay=0.5)
    with api_client(server.base_url, server.admin_key) as admin, \
            api_client(server.base_url, server.create_key("bob")) as bob:
        assert admin.get("/v1/engine/hosts").json() == {"hosts": []}
        refused = bob.get("/v1/engine/hosts")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "FORBIDDEN"

        created = admin.post("/v1/sessions", json={"name": "sales"})
        assert created.status_code == 201
        sid = created.json()["session_id"]
        poll(admin, f"/v1/sessions/{sid}", lambda s: s["status"] == "qr_ready")
        assert admin.post(f"/v1/sessions/{sid}/simulate", json={"action": "scan"}).status_code == 200
        poll(admin, f"/v1/sessions/{sid}", lambda s: s["status"] == "connected")

        hosts = admin.get("/v1/engine/hosts").json()["hosts"]
        assert len(hosts) == 1
        host = hosts[0]
        assert set(host) == {"id", "pid", "sessions", "started_at", "connects", "restarts", "crashes"}
        assert host["sessions"] == [sid] and host["connects"] == 1
        assert (host["restarts"], host["crashes"]) == (0, 0)
        assert host["pid"] != os.getpid() and alive(host["pid"])
        last_id = server.call(lambda: _last_id(server))

        os.kill(host["pid"], signal.SIGKILL)
        # The server keeps answering while the session's engine is gone.
        assert admin.get("/v1/health").status_code == 200
        assert admin.get("/v1/sessions").status_code == 200
        poll(admin, f"/v1/sessions/{sid}", lambda s: s["status"] == "connected" and s["reconnect_count"] == 1)

        events = read_until(admin, "/v1/events", lambda e: e.event == "connected",
                            headers={"Last-Event-ID": str(last_id)})
        kinds = [(e.event, decode(e).get("reason")) for e in events]
        assert ("disconnected", "engine_crashed") in kinds
        assert kinds[-1][0] == "connected"

        after = admin.get("/v1/engine/hosts").json()["hosts"]
        assert [h["sessions"] for h in after] == [[sid]]
        assert after[0]["pid"] != host["pid"] and (after[0]["restarts"], after[0]["crashes"]) == (1, 1)


async def _last_id(server: BackgroundServer) -> int:
    assert server.manager is not None
    await server.manager.drain_all()
    return server.manager.store.last_committed_id


def test_watui_serve_engine_isolation_process_runs_and_stops_its_hosts(
    spawn_server: Callable[..., ServerProcess],
) -> None:
    proc = spawn_server(args=["--engine-isolation", "process"])
    assert proc.proc is not None
    with api_client(proc.base_url, proc.admin_key) as admin:
        sid = admin.post("/v1/sessions", json={"name": "hosted"}).json()["session_id"]
        poll(admin, f"/v1/sessions/{sid}", lambda s: s["status"] == "qr_ready")
        hosts = admin.get("/v1/engine/hosts").json()["hosts"]
        assert [h["sessions"] for h in hosts] == [[sid]]
        pid = hosts[0]["pid"]
        parent = int(Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[1])
        assert parent == proc.proc.pid  # watui serve started it itself
    assert proc.terminate() in (0, -signal.SIGTERM)
    assert "Traceback" not in "".join(proc.output)
    deadline = time.monotonic() + 10
    while alive(pid):
        assert time.monotonic() < deadline, "the host outlived watui serve"
        time.sleep(0.05)
