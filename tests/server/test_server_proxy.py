"""A proxy per session over HTTP: validation, the password masked on every read, the
connection details (issue 21). A real server on loopback, real HTTP and SSE clients."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from server_helpers import api_client, decode, read_until

from watui.engines.simulated import SimulatedEngine
from watui.server import BackgroundServer

PROXY = "socks5://alice:s3cret-Pw@proxy.example:1080"
MASKED = "socks5://alice:***@proxy.example:1080"
SECRET = "s3cret-Pw"


def create(client: httpx.Client, name: str, start: bool = False, **settings: object) -> dict:
    created = client.post("/v1/sessions", json={"name": name, "start": start, "settings": settings})
    assert created.status_code == 201, created.text
    body: dict = created.json()
    return body


@pytest.mark.parametrize(("proxy", "says"), [
    ("socks4://proxy.example:1080", "got scheme 'socks4'"),
    ("ftp://proxy.example:21", "got scheme 'ftp'"),
    ("proxy.example:1080", "must be a URL"),
    ("socks5://proxy.example", "must give a port"),
    ("http://proxy.example:99999", "port must be a number"),
    ("socks5://:1080", "must name a host"),
    ("socks5://user:s3cret-Pw@proxy.example:1080/x", "no path"),
])
def test_a_bad_proxy_is_422_with_a_clear_message(client: httpx.Client, proxy: str, says: str) -> None:
    for answer in (
        client.post("/v1/sessions", json={"name": "bad", "start": False, "settings": {"proxy": proxy}}),
        client.patch(f"/v1/sessions/{create(client, f'p{abs(hash(proxy))}')['session_id']}",
                     json={"settings": {"proxy": proxy}}),
    ):
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert says in error["message"] and "settings.proxy" in error["message"]
        assert SECRET not in answer.text  # the refused input is not echoed
    assert client.get("/v1/sessions", params={"q": "bad"}).json()["total"] == 0


def test_the_password_shows_only_in_the_answer_that_set_it(client: httpx.Client) -> None:
    created = create(client, "proxied", proxy=PROXY)
    sid = created["session_id"]
    assert created["session"]["settings"]["proxy"] == PROXY  # the create that set it

    # Every read masks it: one session, the list, the bulk read, a lifecycle verb's answer.
    assert client.get(f"/v1/sessions/{sid}").json()["settings"]["proxy"] == MASKED
    [listed] = client.get("/v1/sessions").json()["sessions"]
    assert listed["settings"]["proxy"] == MASKED
    bulk = client.post("/v1/bulk/sessions", json={})
    assert bulk.status_code == 200 and SECRET not in bulk.text
    assert json.loads(bulk.text.splitlines()[0])["settings"]["proxy"] == MASKED
    other = client.patch(f"/v1/sessions/{sid}", json={"description": "renamed"})
    assert other.json()["settings"]["proxy"] == MASKED

    # The masked value sent back keeps the password (and is not shown as if set anew).
    echoed = client.patch(f"/v1/sessions/{sid}", json={"settings": {"proxy": MASKED}})
    assert echoed.status_code == 200 and echoed.json()["settings"]["proxy"] == MASKED

    # A PATCH that sets a new one shows it, once.
    new = "http://carol:n3w-Pw@other.example:3128"
    patched = client.patch(f"/v1/sessions/{sid}", json={"settings": {"proxy": new}})
    assert patched.json()["settings"]["proxy"] == new
    assert client.get(f"/v1/sessions/{sid}").json()["settings"]["proxy"] == "http://carol:***@other.example:3128"

    # null clears it; a proxy without a password has nothing to mask.
    assert client.patch(f"/v1/sessions/{sid}", json={"settings": {"proxy": None}}).json()["settings"]["proxy"] is None
    plain = create(client, "plain", proxy="socks5://proxy.example:1080")
    assert client.get(f"/v1/sessions/{plain['session_id']}").json()["settings"]["proxy"] == "socks5://proxy.example:1080"


def test_events_and_streams_never_carry_the_password(server: BackgroundServer, client: httpx.Client) -> None:
    unreachable = "socks5://alice:s3cret-Pw@proxy.invalid:1080"
    sid = create(client, "unreachable", start=True, proxy=unreachable)["session_id"]
    stream = read_until(client, f"/v1/sessions/{sid}/stream", lambda e: e.event == "error")
    error = decode(stream[-1])
    assert error["code"] == "proxy_unreachable"
    assert error["message"] == "cannot reach the proxy socks5://alice:***@proxy.invalid:1080"
    assert "socks5://alice:***@proxy.invalid:1080" in error["details"]
    everything = read_until(client, "/v1/events?last_event_id=0", lambda e: e.event == "error")
    for event in [*stream, *everything]:
        assert SECRET not in event.data
    log = client.get("/v1/events/log", params={"limit": 500})
    recent = client.get(f"/v1/sessions/{sid}/events")
    assert "proxy.invalid" in log.text and "proxy.invalid" in recent.text
    assert SECRET not in log.text and SECRET not in recent.text
    failed = client.get(f"/v1/sessions/{sid}").json()
    assert failed["status"] == "failed" and SECRET not in json.dumps(failed)


def test_watui_proxy_is_the_default_and_not_copied_into_sessions(
    start_server: Callable[..., BackgroundServer],
) -> None:
    server = start_server(proxy="http://bob:def4ult-Pw@gateway.example:3128")
    with api_client(server.base_url, server.admin_key) as client:
        sid = create(client, "defaulted", start=True)["session_id"]
        session = client.get(f"/v1/sessions/{sid}").json()
        assert session["settings"]["proxy"] is None
        assert server.manager is not None
        engine = server.manager.engine
        assert isinstance(engine, SimulatedEngine)
        assert engine.phone(sid).options.proxy == "http://bob:def4ult-Pw@gateway.example:3128"
        assert "def4ult-Pw" not in client.get("/v1/sessions").text


def test_connection_details_in_the_api_and_the_schema(client: httpx.Client) -> None:
    sid = create(client, "linked", start=True)["session_id"]
    assert client.get(f"/v1/sessions/{sid}").json()["connection"] is None
    read_until(client, f"/v1/sessions/{sid}/stream", lambda e: e.event == "qr")
    assert client.post(f"/v1/sessions/{sid}/simulate", json={"action": "scan"}).status_code == 200
    events = read_until(client, f"/v1/sessions/{sid}/stream", lambda e: e.event == "connected")
    connected = decode(events[-1])
    assert connected["platform"] == "android" and connected["push_name"]
    session = client.get(f"/v1/sessions/{sid}").json()
    connection = session["connection"]
    assert connection["platform"] == "android"
    assert connection["push_name"] == session["push_name"] == connected["push_name"]
    assert connection["business_name"] is None
    assert connection["connected_at"] == session["connected_at"]

    schema = client.get("/openapi.json").json()["components"]["schemas"]
    view = schema["SessionView"]["properties"]
    assert "connection" in view
    assert set(schema["Connection"]["properties"]) == {"platform", "push_name", "business_name", "connected_at"}
    settings = schema["SessionSettings"]["properties"]["proxy"]
    assert "socks5://" in json.dumps(settings) and "masked" in json.dumps(settings)
