"""Webhook targets and secrets over HTTP (issue 11, items 2 and 9): private targets refused at
create/PATCH, the operator's exceptions, secrets that can sign, URL passwords masked, and a
non-admin never reads a receiver's body through the deliveries route."""

from __future__ import annotations

import base64
import http.server
import time
from collections.abc import Callable, Iterator

import pytest
from server_helpers import api_client, serve_http

from watui.server import BackgroundServer

FORBIDDEN = [
    "http://localhost/hook", "http://0.0.0.0/hook", "http://2130706433/hook", "http://127.1/hook",
    "http://[::ffff:127.0.0.1]/hook", "http://169.254.169.254/latest/meta-data", "http://10.0.0.1/hook",
    "http://100.64.0.1/hook", "http://[fd00::1]/hook", "http://[::1]:8080/hook", "http://224.0.0.1/",
    "http://192.168.1.20/", "http://172.16.0.1/", "http://user:pw@127.0.0.1:9/x",
]


def secret_of(n: int) -> str:
    return "whsec_" + base64.b64encode(bytes(range(n))).decode()


@pytest.fixture
def guarded(start_server: Callable[..., BackgroundServer]) -> BackgroundServer:
    return start_server(webhook_allow_private=False)


@pytest.mark.parametrize("url", FORBIDDEN)
def test_private_targets_are_refused_at_create_and_patch(guarded: BackgroundServer, url: str) -> None:
    bob = guarded.create_key("bob")
    with api_client(guarded.base_url, bob) as client:
        created = client.post("/v1/sessions", json={"name": "n", "start": False, "settings": {"webhook_url": url}})
        assert created.status_code == 422, created.text
        assert created.json()["error"]["code"] == "WEBHOOK_URL_FORBIDDEN"
        assert client.get("/v1/sessions").json()["total"] == 0, "a refused create leaves nothing"
        sid = client.post("/v1/sessions", json={"name": "n", "start": False}).json()["session_id"]
        patched = client.patch(f"/v1/sessions/{sid}", json={"settings": {"webhook_url": url}})
        assert patched.status_code == 422 and patched.json()["error"]["code"] == "WEBHOOK_URL_FORBIDDEN"
        assert client.get(f"/v1/sessions/{sid}").json()["settings"]["webhook_url"] is None


def test_public_and_allowed_targets_are_accepted(start_server: Callable[..., BackgroundServer]) -> None:
    server = start_server(webhook_allow_private=False, webhook_allowed_hosts=["localhost", "10.0.0.0/8"])
    with api_client(server.base_url, server.admin_key) as client:
        for n, url in enumerate(("http://93.184.215.14/hook", "http://localhost:9/hook", "http://10.1.2.3/hook")):
            created = client.post("/v1/sessions", json={"name": f"n{n}", "start": False,
                                                        "settings": {"webhook_url": url}})
            assert created.status_code == 201, (url, created.text)
        refused = client.post("/v1/sessions", json={"name": "n", "start": False,
                                                    "settings": {"webhook_url": "http://127.0.0.1/"}})
        assert refused.status_code == 422


def test_webhook_secrets_must_decode_to_24_to_64_bytes(server: BackgroundServer) -> None:
    with api_client(server.base_url, server.admin_key) as client:
        cases = ((secret_of(24), True), (secret_of(64), True), (secret_of(23), False),
                 (secret_of(65), False), ("whsec_" + "A" * 25, False), ("whsec_" + "A" * 33, False))
        for n, (secret, ok) in enumerate(cases):
            answer = client.post("/v1/sessions", json={
                "name": f"s{n}", "start": False,
                "settings": {"webhook_url": "http://93.184.215.14/h", "webhook_secret": secret}})
            assert (answer.status_code == 201) is ok, (secret, answer.text)
            if not ok:
                assert answer.json()["error"]["code"] == "VALIDATION_ERROR"


def test_url_passwords_are_masked_everywhere_but_the_response_that_set_them(server: BackgroundServer) -> None:
    url = "http://hooker:s3cr3t-pw@93.184.215.14:8080/hook?x=1"
    with api_client(server.base_url, server.admin_key) as client:
        created = client.post("/v1/sessions", json={"name": "s", "start": False, "settings": {"webhook_url": url}})
        assert created.json()["session"]["settings"]["webhook_url"] == url
        sid = created.json()["session_id"]
        masked = "http://hooker:***@93.184.215.14:8080/hook?x=1"
        assert client.get(f"/v1/sessions/{sid}").json()["settings"]["webhook_url"] == masked
        assert client.get("/v1/sessions").json()["sessions"][0]["settings"]["webhook_url"] == masked
        assert "s3cr3t-pw" not in client.patch(f"/v1/sessions/{sid}", json={"name": "renamed"}).text
        patched = client.patch(f"/v1/sessions/{sid}", json={"settings": {"webhook_url": url + "&y=2"}})
        assert patched.json()["settings"]["webhook_url"] == url + "&y=2"
        assert client.post(f"/v1/sessions/{sid}/start").status_code == 200
        # The attempts log and the server's own log never show it either.
        deadline = time.monotonic() + 10
        while not (deliveries := client.get(f"/v1/sessions/{sid}/webhooks/deliveries").json()["deliveries"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "s3cr3t-pw" not in str(deliveries) and ":***@" in deliveries[0]["url"]


class _Internal(http.server.BaseHTTPRequestHandler):
    """An "internal" page: what an attacker would like to read through the deliveries route."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        body = b"root:x:0:0 internal admin page"
        self.send_response(500)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def internal_page() -> Iterator[str]:
    with serve_http(_Internal) as url:
        yield url + "/internal"


def test_non_admins_see_a_status_and_a_short_reason_never_the_body(
    start_server: Callable[..., BackgroundServer], internal_page: str
) -> None:
    # The operator allowed this receiver (it is theirs); still, only admins see what it said.
    server = start_server(webhook_allowed_hosts=["127.0.0.1"], webhook_allow_private=False)
    assert server.manager is not None and server.manager.webhooks is not None
    server.manager.webhooks._transport = None  # a real network for this one
    bob = server.create_key("bob")
    with api_client(server.base_url, bob) as client, api_client(server.base_url, server.admin_key) as admin:
        sid = client.post("/v1/sessions", json={"name": "s", "start": False,
                                                "settings": {"webhook_url": internal_page}}).json()["session_id"]
        assert client.post(f"/v1/sessions/{sid}/start").status_code == 200
        route = f"/v1/sessions/{sid}/webhooks/deliveries"
        deadline = time.monotonic() + 15
        while not any(d["attempts"] for d in client.get(route).json()["deliveries"]):
            assert time.monotonic() < deadline, "a delivery was attempted"
            time.sleep(0.05)
        mine = client.get(route).text
        assert "internal admin page" not in mine and "root:x" not in mine
        tried = next(d for d in client.get(route).json()["deliveries"] if d["attempts"])
        assert tried["last_status_code"] == 500 and tried["last_error"] == "HTTP 500"
        assert tried["attempt_log"][0]["error"] == "HTTP 500"
        assert "internal admin page" in admin.get(route).text, "the admin sees the answer's start"
