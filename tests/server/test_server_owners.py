"""Keys, owners and limits: 401 without a valid key, 404 for another owner's session on every
route, lists scoped to the caller, the running-sessions cap, and the first-start admin key."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import httpx
from click.testing import CliRunner
from server_helpers import api_client

from watui.cli import main as cli
from watui.server import BackgroundServer

ROUTES_ON_A_SESSION: list[tuple[str, str, dict[str, object] | None]] = [
    ("GET", "", None),
    ("PATCH", "", {"description": "mine now"}),
    ("DELETE", "", None),
    ("POST", "/start", None),
    ("POST", "/stop", None),
    ("POST", "/restart", None),
    ("POST", "/logout", None),
    ("GET", "/qr", None),
    ("POST", "/pair-code", {"phone_number": "+14155550123"}),
    ("POST", "/messages", {"to": "+14155550123", "text": "hi"}),
    ("GET", "/messages", None),
    ("GET", "/webhooks/deliveries", None),
    ("POST", "/simulate", {"action": "scan"}),
    ("GET", "/stream", None),
]


def test_no_wrong_or_revoked_key_is_401(server: BackgroundServer) -> None:
    with api_client(server.base_url) as anonymous:
        response = anonymous.get("/v1/sessions")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
        assert response.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/v1/events").status_code == 401
        assert anonymous.get("/v1/health").status_code == 200, "health needs no key"
        for header in ("Bearer wat_not-a-key", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 5000, "Bearer"):
            refused = anonymous.get("/v1/sessions", headers={"Authorization": header})
            assert refused.status_code == 401, header
    with api_client(server.base_url, "wat_nope") as wrong:
        assert wrong.post("/v1/sessions", json={"name": "x"}).status_code == 401


def test_keys_from_the_cli_are_hashed_and_revocable(server: BackgroundServer) -> None:
    data_dir = str(server.settings.data_dir)
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "--owner", "acme", "--data-dir", data_dir])
    assert created.exit_code == 0, created.output
    secret = created.output.strip().splitlines()[-1]
    with api_client(server.base_url, secret) as acme:
        assert acme.post("/v1/sessions", json={"name": "a", "start": False}).status_code == 201
        assert acme.get("/v1/sessions").json()["total"] == 1

        db = sqlite3.connect(server.settings.db_path)
        try:
            dump = "\n".join(db.iterdump())
        finally:
            db.close()
        assert secret not in dump, "only a hash of the key is stored"

        listed = runner.invoke(cli, ["keys", "list", "--data-dir", data_dir])
        key_id = next(line.split()[0] for line in listed.output.splitlines() if " acme " in line)
        revoked = runner.invoke(cli, ["keys", "revoke", key_id, "--data-dir", data_dir])
        assert revoked.exit_code == 0, revoked.output
        assert acme.get("/v1/sessions").status_code == 401


def test_another_owners_session_is_404_on_every_route(server: BackgroundServer, client: httpx.Client) -> None:
    alice = api_client(server.base_url, server.create_key("alice"))
    bob = api_client(server.base_url, server.create_key("bob"))
    with alice, bob:
        mine = alice.post("/v1/sessions", json={"name": "alice-1"}).json()["session_id"]
        bob.post("/v1/sessions", json={"name": "bob-1", "start": False})
        for method, suffix, body in ROUTES_ON_A_SESSION:
            response = bob.request(method, f"/v1/sessions/{mine}{suffix}", json=body)
            assert response.status_code == 404, (method, suffix, response.text)
            assert response.json()["error"]["code"] == "SESSION_NOT_FOUND", (method, suffix)
            # Same answer as for a session that does not exist at all: no existence leak.
            ghost = bob.request(method, f"/v1/sessions/ses_0000000000000000{suffix}", json=body)
            assert (ghost.status_code, ghost.json()["error"]["code"]) == (404, "SESSION_NOT_FOUND")
        # ...and with the query-string key on the stream.
        stream = httpx.get(f"{server.base_url}/v1/sessions/{mine}/stream",
                           params={"access_token": server.create_key("bob")})
        assert stream.status_code == 404

        # Untouched by all that.
        assert alice.get(f"/v1/sessions/{mine}").json()["description"] == ""

        assert [s["name"] for s in alice.get("/v1/sessions").json()["sessions"]] == ["alice-1"]
        assert [s["name"] for s in bob.get("/v1/sessions").json()["sessions"]] == ["bob-1"]
        everything = client.get("/v1/sessions").json()
        assert everything["total"] == 2 and {s["owner"] for s in everything["sessions"]} == {"alice", "bob"}
        # The admin can act on anyone's session.
        assert client.get(f"/v1/sessions/{mine}").status_code == 200


def test_running_sessions_are_capped_per_owner(start_server: Callable[..., BackgroundServer]) -> None:
    server = start_server(max_active_sessions_per_owner=2)
    with api_client(server.base_url, server.create_key("carol")) as carol, \
            api_client(server.base_url, server.admin_key) as admin:
        for n in range(2):
            assert carol.post("/v1/sessions", json={"name": f"c{n}"}).status_code == 201
        over = carol.post("/v1/sessions", json={"name": "c2"})
        assert over.status_code == 409
        assert over.json()["error"]["code"] == "SESSION_LIMIT_REACHED"
        # A stopped one may exist, but not start.
        parked = carol.post("/v1/sessions", json={"name": "c3", "start": False}).json()["session_id"]
        assert carol.post(f"/v1/sessions/{parked}/start").json()["error"]["code"] == "SESSION_LIMIT_REACHED"
        # Stopping one frees a slot.
        first = carol.get("/v1/sessions", params={"status": "qr_ready"}).json()["sessions"]
        first = first or carol.get("/v1/sessions", params={"status": "initializing"}).json()["sessions"]
        assert carol.post(f"/v1/sessions/{first[0]['id']}/stop").status_code == 200
        assert carol.post(f"/v1/sessions/{parked}/start").status_code == 200
        # Admins have no cap.
        for n in range(3):
            assert admin.post("/v1/sessions", json={"name": f"a{n}"}).status_code == 201


def test_first_start_makes_one_admin_key_file_0600(start_server: Callable[..., BackgroundServer],
                                                  tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    server = start_server(data_dir=data_dir)
    key_file = data_dir / "admin.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    with api_client(server.base_url, key) as admin:
        assert admin.get("/v1/sessions").status_code == 200
    server.stop()
    # A second start keeps the existing key and makes no new one.
    again = start_server(data_dir=data_dir)
    assert key_file.read_text().strip() == key
    assert len(again.call(lambda: again.manager.store.list_api_keys())) == 1  # type: ignore[union-attr]


class _IdleSession:
    async def connect(self) -> None: ...
    async def disconnect(self) -> None: ...
    async def logout(self) -> None: ...
    async def pair_phone(self, phone_number: str) -> str:
        raise RuntimeError("not in this test")
    async def send_text(self, to: str, text: str) -> str:
        raise RuntimeError("not in this test")
    async def close(self) -> None: ...


class _RealishEngine:
    """Not the simulated engine: an engine whose sessions just wait."""

    name = "neonize"
    plays_phone = False

    def session(self, session_id: str, report: object, *, auth_path: Path, options: object = None) -> _IdleSession:
        return _IdleSession()

    async def has_auth(self, session_id: str, auth_path: Path) -> bool:
        return False

    async def remove_auth(self, session_id: str, auth_path: Path) -> None: ...
    async def aclose(self) -> None: ...


def test_simulate_is_404_and_undocumented_with_the_real_engine(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server(engine_factory=_RealishEngine, engine="neonize")
    with api_client(server.base_url, server.admin_key) as admin:
        session_id = admin.post("/v1/sessions", json={"name": "real"}).json()["session_id"]
        response = admin.post(f"/v1/sessions/{session_id}/simulate", json={"action": "scan"})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
        paths = admin.get("/openapi.json").json()["paths"]
        assert not any(p.endswith("/simulate") for p in paths)
        assert admin.get("/v1/health").json()["engine"] == "neonize"
