"""``RemoteService`` against a real server: each ``SessionService`` call answers over HTTP what
the server's own in-process service answers, and refuses with the same class and the
server's own message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from watui.errors import (
    EngineFailure,
    Forbidden,
    InvalidTransition,
    QrNotAvailable,
    SessionLimitReached,
    SessionNotConnected,
    SessionNotFound,
    Unauthorized,
    ValidationFailed,
    WatuiError,
)
from watui.machine import EventType, Status
from watui.models import Caller, SessionCreate, SessionUpdate, SimulateRequest
from watui.remote import RemoteService, ServerUnreachable
from watui.server import BackgroundServer
from watui.service import SessionService

from .attach_helpers import background_server, free_port

T = TypeVar("T")


@pytest.fixture
def server(tmp_path: Path) -> Any:
    server = background_server(tmp_path / "data", max_active_sessions_per_owner=2)
    yield server
    server.stop()


@pytest.fixture
async def remote(server: BackgroundServer) -> AsyncIterator[RemoteService]:
    service = await RemoteService.open(server.base_url, server.admin_key)
    yield service
    await service.aclose()


def local(server: BackgroundServer, caller: Caller | None = None) -> SessionService:
    assert server.manager is not None
    return server.manager.service(caller or Caller(owner="admin", admin=True))


async def on_server(server: BackgroundServer, call: Callable[[], Awaitable[T]]) -> T:
    """Run ``call()`` on the server's own loop (its in-process service), without blocking ours."""

    async def run() -> T:
        return await call()

    assert server.loop is not None
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), server.loop))


async def until(remote: RemoteService, session_id: str, status: Status) -> None:
    for _ in range(500):
        if (await remote.get_session(session_id)).status == status:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{session_id} never became {status}")


def spec(name: str, **more: Any) -> SessionCreate:
    return SessionCreate.model_validate({"name": name, **more})


async def test_every_read_matches_the_servers_own_service(server: BackgroundServer, remote: RemoteService) -> None:
    assert remote.simulated
    hooked = await remote.create_session(spec("hooked", start=False, settings={
        "webhook_url": "https://example.com/hook", "webhook_events": ["status"]}))
    assert hooked.settings.webhook_secret not in (None, "whsec_…"), "shown once, on creation"
    assert (await remote.get_session(hooked.id)).settings.webhook_secret == "whsec_…", "masked after"
    shop = await remote.create_session(spec("shop"))
    await until(remote, shop.id, Status.QR_READY)
    qr = await remote.get_qr(shop.id)
    assert qr == await on_server(server, lambda: local(server).get_qr(shop.id))
    await remote.simulate(shop.id, SimulateRequest(action="scan"))
    await until(remote, shop.id, Status.CONNECTED)
    sent = await remote.send_message(shop.id, "+14155550123", "hello [bold]not markup[/]")
    await remote.simulate(shop.id, SimulateRequest.model_validate(
        {"action": "message", "text": "hi back", "chat": "+14155550123"}))

    here = local(server)
    for kwargs in ({"limit": None}, {"limit": None, "sort": "name", "descending": True},
                   {"status": Status.CONNECTED}, {"query": "hoo"}):
        mine, theirs = await remote.list_sessions(**kwargs), await on_server(server, lambda k=kwargs: here.list_sessions(**k))
        assert [s.id for s in mine.sessions] == [s.id for s in theirs.sessions] and mine.total == theirs.total
    got = await remote.get_session(shop.id)
    assert got == await on_server(server, lambda: here.get_session(shop.id))
    messages = await remote.list_messages(shop.id)
    assert messages == await on_server(server, lambda: here.list_messages(shop.id))
    assert messages.messages[-1].id == sent.id and messages.messages[-1].text == "hello [bold]not markup[/]"
    assert await remote.recent_events(shop.id, limit=5) == await on_server(
        server, lambda: here.recent_events(shop.id, limit=5))
    assert await remote.list_events(after_id=2, limit=7) == await on_server(
        server, lambda: here.list_events(after_id=2, limit=7))
    assert await remote.list_events(session_id=shop.id) == await on_server(
        server, lambda: here.list_events(session_id=shop.id))
    assert await remote.list_webhook_deliveries(hooked.id) == await on_server(
        server, lambda: here.list_webhook_deliveries(hooked.id))
    assert remote.restore_progress is None
    assert await remote.engine_hosts() == await on_server(server, here.engine_hosts) == []  # inline engine

    renamed = await remote.update_session(hooked.id, SessionUpdate(name="hooked-2", description="d"))
    assert (renamed.name, renamed.description) == ("hooked-2", "d")
    assert renamed.settings.webhook_url is not None, "a patch without settings keeps them"
    assert (await remote.logout(shop.id)).status == Status.DISCONNECTED
    assert (await remote.restart(shop.id)).status == Status.INITIALIZING
    assert (await remote.stop(shop.id)).status == Status.STOPPED
    code = await remote.request_pair_code(shop.id, "+1 415 555 0199")
    assert len(code.code.replace("-", "")) == 8
    await remote.delete(shop.id)
    with pytest.raises(SessionNotFound):
        await remote.get_session(shop.id)


async def test_a_listing_longer_than_a_page_is_read_whole(server: BackgroundServer, remote: RemoteService) -> None:
    here = local(server)
    for n in range(230):
        await on_server(server, lambda n=n: here.create_session(spec(f"s{n:03}", start=False)))
    page = await remote.list_sessions(limit=None, sort="name")
    assert [s.name for s in page.sessions] == [f"s{n:03}" for n in range(230)] and page.total == 230
    window = await remote.list_sessions(limit=150, offset=20, sort="name")
    assert [s.name for s in window.sessions] == [f"s{n:03}" for n in range(20, 170)]


async def refusal(call: Awaitable[Any]) -> WatuiError:
    with pytest.raises(WatuiError) as info:
        await call
    return info.value


async def test_refusals_are_the_same_classes_with_the_servers_words(server: BackgroundServer, remote: RemoteService) -> None:
    """Each refusal: the class the in-process service raises, and the server's message."""
    idle = await remote.create_session(spec("idle", start=False))
    here = local(server)
    cases: list[tuple[type[WatuiError], Callable[[SessionService], Awaitable[Any]]]] = [
        (SessionNotFound, lambda s: s.get_session("ses_nope")),
        (InvalidTransition, lambda s: s.stop(idle.id)),
        (QrNotAvailable, lambda s: s.get_qr(idle.id)),
        (SessionNotConnected, lambda s: s.send_message(idle.id, "+14155550123", "hi")),
    ]
    for cls, call in cases:
        theirs = await refusal(on_server(server, lambda c=call: c(here)))
        mine = await refusal(call(remote))
        assert type(mine) is cls and type(theirs) is cls
        assert (mine.code, mine.message) == (theirs.code, theirs.message)
        assert mine.details == theirs.details
    stop = await refusal(remote.stop(idle.id))
    assert isinstance(stop, InvalidTransition) and (stop.from_status, stop.trigger) == ("stopped", "stop")

    # Refusals that only the HTTP layer makes: its own words too.
    invalid = await refusal(remote.request_pair_code(idle.id, "12"))
    assert isinstance(invalid, ValidationFailed) and "phone" in invalid.message

    key = server.create_key("bob")
    bob = await RemoteService.open(server.base_url, key)
    try:
        for name in ("b1", "b2"):
            await bob.create_session(spec(name))
        limit = await refusal(bob.create_session(spec("b3")))
        assert isinstance(limit, SessionLimitReached) and limit.message
        assert isinstance(await refusal(bob.get_session(idle.id)), SessionNotFound), "another owner's"
        assert isinstance(await refusal(bob.engine_hosts()), Forbidden), "admin only"
    finally:
        await bob.aclose()


async def test_opening_says_what_is_wrong(server: BackgroundServer) -> None:
    with pytest.raises(Unauthorized) as bad_key:
        await RemoteService.open(server.base_url, "wk_not_a_key")
    async with httpx.AsyncClient() as client:
        answer = (await client.get(server.base_url + "/v1/sessions",
                                   headers={"Authorization": "Bearer wk_not_a_key"})).json()
    assert bad_key.value.message == answer["error"]["message"]

    with pytest.raises(ServerUnreachable) as nobody:
        await RemoteService.open(f"http://127.0.0.1:{free_port()}", "key")
    assert "Cannot reach the watui server" in nobody.value.message


async def test_a_subscription_filters_by_session_and_type(server: BackgroundServer, remote: RemoteService) -> None:
    one = await remote.create_session(spec("one", start=False))
    two = await remote.create_session(spec("two", start=False))
    subscription = remote.subscribe(session_id=two.id, types=frozenset({EventType.STATUS}))
    await remote.start(one.id)
    await remote.start(two.id)
    event = await anext(subscription)
    assert (event.session_id, event.type, event.payload["to"]) == (two.id, EventType.STATUS, "initializing")
    assert event.owner == "admin"
    await subscription.aclose()
    with pytest.raises(StopAsyncIteration):
        await anext(subscription)


def test_engine_failure_keeps_its_class() -> None:
    from watui.remote.errors import error_from_body

    error = error_from_body(502, {"error": {"code": "ENGINE_ERROR", "message": "Sending failed: x", "details": {}}})
    assert isinstance(error, EngineFailure) and error.message == "Sending failed: x"
    unknown = error_from_body(429, {"error": {"code": "TOO_MANY_STREAMS_NEW", "message": "slow down"}})
    assert (unknown.code, unknown.status, unknown.message) == ("TOO_MANY_STREAMS_NEW", 429, "slow down")
    garbage = error_from_body(502, "<html>bad gateway</html>")
    assert garbage.status == 502 and "502" in garbage.message


async def test_reads_in_one_turn_go_out_as_one_bulk_read(server: BackgroundServer, remote: RemoteService) -> None:
    made = [await remote.create_session(spec(f"b{n}", start=False)) for n in range(5)]
    reads = await asyncio.gather(*(remote.get_session(s.id) for s in made), remote.get_session("ses_gone"),
                                 return_exceptions=True)
    assert [r.name for r in reads[:5]] == [f"b{n}" for n in range(5)]  # type: ignore[union-attr]
    assert isinstance(reads[5], SessionNotFound) and reads[5].message == "No session with id 'ses_gone'"


async def test_the_bulk_route_streams_what_the_caller_may_see(server: BackgroundServer) -> None:
    admin_key, alice_key = server.admin_key, server.create_key("alice")
    async with httpx.AsyncClient(base_url=server.base_url + "/v1") as client:
        async def post(key: str, body: Any) -> httpx.Response:
            return await client.post("/bulk/sessions", json=body, headers={"Authorization": f"Bearer {key}"})

        mine = (await client.post("/sessions", json={"name": "alice-1", "start": False},
                                  headers={"Authorization": f"Bearer {alice_key}"})).json()["session_id"]
        other = (await client.post("/sessions", json={"name": "admin-1", "start": False, "settings": {
            "webhook_url": "https://example.com/h"}}, headers={"Authorization": f"Bearer {admin_key}"})).json()
        everything = await post(admin_key, {"sort": "name"})
        assert everything.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in everything.text.splitlines()]
        assert [s["name"] for s in lines] == ["admin-1", "alice-1"]
        assert lines[0]["settings"]["webhook_secret"] == "whsec_…", "masked, as everywhere"
        alice = await post(alice_key, {"ids": [mine, other["session_id"], "ses_nope"]})
        assert [json.loads(line)["id"] for line in alice.text.splitlines()] == [mine], "not another owner's"
        odd = await post(admin_key, {"ids": ["has space", "ses_nope"]})
        assert odd.status_code == 200 and odd.text == "", "ids that name nothing are left out"
        for bad in ({"ids": ["x" * 65]}, {"ids": ["x"] * 1001}, {"sort": "owner"}, {"extra": 1}, [],
                    {"descending": 0}):
            answer = await post(admin_key, bad)
            assert answer.status_code == 422 and answer.json()["error"]["code"] == "VALIDATION_ERROR", bad
        assert (await client.post("/bulk/sessions", json={})).status_code == 401
