"""CORS for browser pages, the layering rule (no console in the server), and `watui serve`'s
options reaching the server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import httpx
from serve_process import REPO, ServerProcess
from server_helpers import api_client

from watui.server import BackgroundServer

ORIGIN = "https://dashboard.example"


def test_cors_lets_a_configured_origin_use_eventsource(start_server: Callable[..., BackgroundServer]) -> None:
    server = start_server(cors_origins=[ORIGIN])
    with api_client(server.base_url) as anonymous:
        preflight = anonymous.options(
            "/v1/sessions",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        stream_url = f"/v1/events?access_token={server.admin_key}"
        with anonymous.stream("GET", stream_url, headers={"Origin": ORIGIN}) as response:
            assert response.status_code == 200
            assert response.headers["access-control-allow-origin"] == ORIGIN
        # Refusals carry the header too, so the page can read the error.
        refused = anonymous.get("/v1/sessions", headers={"Origin": ORIGIN})
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ORIGIN
        other = anonymous.get("/v1/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_no_cors_headers_unless_configured(server: BackgroundServer) -> None:
    with api_client(server.base_url) as anonymous:
        response = anonymous.get("/v1/health", headers={"Origin": ORIGIN})
        assert "access-control-allow-origin" not in response.headers


def test_the_server_imports_neither_textual_nor_the_console() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'textual' or name.startswith(('textual.', 'watui.app', 'watui.screens', 'watui.widgets')):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import watui.server, watui.server.runner, watui.manager\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_serve_options_and_environment_reach_the_server(spawn_server: Callable[..., ServerProcess]) -> None:
    server = spawn_server(args=["--cors-origin", ORIGIN], WATUI_MAX_BODY_BYTES="2048",
                          WATUI_MAX_ACTIVE_SESSIONS_PER_OWNER="0")
    with api_client(server.base_url, server.admin_key) as admin:
        response = admin.get("/v1/health", headers={"Origin": ORIGIN})
        assert response.headers["access-control-allow-origin"] == ORIGIN
        too_big = admin.post("/v1/sessions", json={"name": "x", "description": "y" * 2100})
        assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
        assert admin.get("/v1/health").json()["engine"] == "simulated"
        # The admin key itself has no limit, but the setting is read: a user key has 0 slots.
    runner_key = _user_key(server)
    with api_client(server.base_url, runner_key) as user:
        refused = user.post("/v1/sessions", json={"name": "one"})
        assert refused.json()["error"]["code"] == "SESSION_LIMIT_REACHED"


def _user_key(server: ServerProcess) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "watui", "keys", "create", "--owner", "limited", "--data-dir", str(server.data_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_head_on_a_stream_answers_at_once(client: httpx.Client) -> None:
    """A HEAD must not open a stream that never ends (it would hang the client)."""
    response = client.head("/v1/events", timeout=5)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    # A 405 names every method the path takes, not just the first route's.
    assert client.request("OPTIONS", "/v1/sessions").headers["allow"] == "GET, POST"
    assert client.put("/v1/sessions/ses_1").headers["allow"] == "DELETE, GET, PATCH"


def test_a_generated_webhook_secret_is_shown_once(client: httpx.Client) -> None:
    created = client.post(
        "/v1/sessions", json={"name": "hooked", "start": False, "settings": {"webhook_url": "http://127.0.0.1:9/h"}}
    )
    assert created.status_code == 201, created.text
    secret = created.json()["session"]["settings"]["webhook_secret"]
    assert secret.startswith("whsec_") and len(secret) > 30
    session_id = created.json()["session_id"]
    assert client.get(f"/v1/sessions/{session_id}").json()["settings"]["webhook_secret"] == "whsec_…"
    # A secret the client chose is not echoed back.
    mine = "whsec_" + "B" * 32
    own = client.post("/v1/sessions", json={"name": "own", "start": False,
                                            "settings": {"webhook_url": "http://127.0.0.1:9/h", "webhook_secret": mine}})
    assert own.json()["session"]["settings"]["webhook_secret"] == "whsec_…"
    # Setting a URL on a session without one generates a secret, shown in that PATCH's answer only.
    plain = client.post("/v1/sessions", json={"name": "plain", "start": False}).json()["session_id"]
    patched = client.patch(f"/v1/sessions/{plain}", json={"settings": {"webhook_url": "http://127.0.0.1:9/h"}})
    assert patched.json()["settings"]["webhook_secret"].startswith("whsec_") and "…" not in patched.json()["settings"]["webhook_secret"]
    again = client.patch(f"/v1/sessions/{plain}", json={"description": "x"})
    assert again.json()["settings"]["webhook_secret"] == "whsec_…"


def test_patch_with_null_flags_changes_nothing_else(client: httpx.Client) -> None:
    sid = client.post("/v1/sessions", json={"name": "nulls", "start": False,
                                            "settings": {"auto_reconnect": False, "max_reconnect_attempts": 3}}).json()["session_id"]
    patched = client.patch(f"/v1/sessions/{sid}", json={"settings": {"auto_reconnect": None, "max_reconnect_attempts": None}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["settings"]["auto_reconnect"] is False
    assert patched.json()["settings"]["max_reconnect_attempts"] == 3
