"""A proxy per session, and the connection details the engine reports (issue 21).

The manager on the simulated engine with a fake clock: the proxy each engine session is
given (its own, or ``WATUI_PROXY``), what a change does to a running session, that the
password never leaves the process (events, logs, webhooks) and that the connection details
are kept with the session, across a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from webhook_receiver import Receiver

from watui.clock import FakeClock, RealClock
from watui.config import Settings
from watui.engines.base import SessionConnected, SessionDisconnected, SessionOptions
from watui.engines.simulated import SimulatedEngine
from watui.machine import EventType, Status
from watui.manager import ScopedService, SessionManager
from watui.manager.engine_options import session_options
from watui.models import (
    PROXY_PATTERN,
    Caller,
    Session,
    SessionCreate,
    SessionSettings,
    SessionUpdate,
    SettingsPatch,
    SimulateRequest,
    check_proxy,
    scrub_secret,
)
from watui.webhooks import WebhookOptions

PROXY = "socks5://alice:s3cret-Pw@proxy.example:1080"
MASKED = "socks5://alice:***@proxy.example:1080"
DEFAULT = "http://bob:def4ult-Pw@gateway.example:3128"
UNREACHABLE = "socks5://alice:s3cret-Pw@proxy.invalid:1080"
"""``.invalid`` never resolves: the simulated engine fails to reach it, as a dialer would."""
SECRETS = ("s3cret-Pw", "def4ult-Pw")


def create(name: str, **settings: Any) -> SessionCreate:
    return SessionCreate.model_validate({"name": name, "settings": settings})


def patch(**settings: Any) -> SessionUpdate:
    return SessionUpdate.model_validate({"settings": settings})


async def linked(admin: ScopedService, clock: FakeClock, name: str, **settings: Any) -> Session:
    session = await admin.create_session(create(name, **settings))
    await clock.advance(0)
    await admin.simulate(session.id, SimulateRequest(action="scan"))
    await clock.advance(0)
    session = await admin.get_session(session.id)
    assert session.status is Status.CONNECTED
    return session


def dialled(engine: SimulatedEngine, session_id: str) -> str | None:
    """The proxy the engine session of ``session_id`` was made with."""
    return engine.phone(session_id).options.proxy


async def everything_logged(manager: SessionManager) -> str:
    """Every event of the log, as JSON: where a leaked password would show."""
    await manager.drain_all()
    events = await manager.store.read_events(limit=100_000)
    return "\n".join(json.dumps(e.model_dump(mode="json")) for e in events)


# ==================================================================== the setting


@pytest.mark.parametrize("value", [
    "socks5://proxy.example:1080",
    "socks5://user:pa%40ss@10.0.0.1:1080",
    "http://user:pass@proxy.example:3128",
    "https://[2001:db8::1]:443",
    "SOCKS5://proxy.example:1080/",
])
def test_proxy_addresses_that_are_accepted(value: str) -> None:
    settings = SessionSettings(proxy=value)
    assert settings.proxy is not None and settings.proxy.startswith(("socks5://", "http://", "https://"))
    assert not settings.proxy.endswith("/")
    assert SettingsPatch(proxy=value).proxy == settings.proxy
    assert re.fullmatch(PROXY_PATTERN, value)  # the OpenAPI schema says the same


@pytest.mark.parametrize(("value", "says"), [
    ("socks4://proxy.example:1080", "got scheme 'socks4'"),
    ("ftp://proxy.example:21", "got scheme 'ftp'"),
    ("proxy.example:1080", "must be a URL"),
    ("socks5://proxy.example", "must give a port"),
    ("socks5://proxy.example:0", "port must be a number"),
    ("socks5://proxy.example:01080", "port must be a number"),
    ("socks5://proxy.example:70000", "port must be a number"),
    ("socks5://proxy.example:socks", "port must be a number"),
    ("socks5://:1080", "must name a host"),
    ("socks5://:pw@proxy.example:1080", "no user name"),
    ("socks5://proxy.example:1080/path", "no path"),
    ("http://proxy.example:8080?x=1", "no path, query"),
    ("socks5://proxy example:1080", "spaces"),
    (" socks5://proxy.example:1080", "got scheme ' socks5'"),
    ("socks5://proxy.example:1080\n", "control characters"),
    ("socks5://alice:p@ss@proxy.example:1080", "percent-encoded"),
    ("socks5://proxÿ.example:1080", "punycode"),
])
def test_proxy_addresses_that_are_refused_say_why(value: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        SessionSettings(proxy=value)
    with pytest.raises(ValidationError, match=says):
        SettingsPatch(proxy=value)
    with pytest.raises(ValidationError, match=says):
        Settings(proxy=value)
    assert not re.fullmatch(PROXY_PATTERN, value)  # the OpenAPI schema refuses it too (ECMA `$`: the end)


def test_the_masked_form_is_an_address_and_scrubbing_hides_the_password() -> None:
    assert check_proxy(MASKED) == MASKED  # a session read back from the API validates
    text = f"dial {PROXY}: refused; auth s3cret-Pw failed"
    scrubbed = scrub_secret(text, PROXY)
    assert "s3cret" not in scrubbed and MASKED in scrubbed
    # Percent-encoded as given, or decoded by whoever quotes it: both are masked.
    encoded = "socks5://alice:p%40ss%2Fw0rd@proxy.example:1080"
    scrubbed = scrub_secret(f"dial {encoded}: no; password p@ss/w0rd refused", encoded)
    assert "w0rd" not in scrubbed and "socks5://alice:***@proxy.example:1080" in scrubbed
    assert scrub_secret("tcp dial failed", PROXY) == "tcp dial failed"
    assert scrub_secret("user:pw@host", "socks5://proxy.example:1080") == "user:pw@host"  # no password


def test_options_take_the_session_proxy_else_watui_proxy(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, engine="simulated", proxy=DEFAULT)
    now = FakeClock().now()
    own = Session(id="ses_own", name="own", owner="o", created_at=now, updated_at=now,
                  settings=SessionSettings(proxy=PROXY))
    plain = Session(id="ses_plain", name="plain", owner="o", created_at=now, updated_at=now)
    assert session_options(settings, own) == SessionOptions(
        proxy=PROXY, download_media=True, media_dir=str(tmp_path / "media" / "ses_own"))
    assert session_options(settings, plain).proxy == DEFAULT
    assert session_options(Settings(data_dir=tmp_path, engine="simulated"), plain).proxy is None
    assert not (tmp_path / "media").exists()  # made by whoever saves the first file


# ==================================================================== reaching the engine


@pytest.fixture
async def proxied(tmp_path: Path, clock: FakeClock) -> AsyncIterator[tuple[SessionManager, SimulatedEngine]]:
    """A manager whose server has a default proxy (``WATUI_PROXY``)."""
    settings = Settings(data_dir=tmp_path / "data", engine="simulated", sqlite_synchronous="NORMAL", proxy=DEFAULT)
    engine = SimulatedEngine(clock=clock, seed=21)
    manager = await SessionManager.open(settings, engine=engine, clock=clock)
    yield manager, engine
    await manager.aclose()


async def test_each_engine_session_gets_its_own_proxy_or_the_default(
    proxied: tuple[SessionManager, SimulatedEngine], clock: FakeClock
) -> None:
    manager, engine = proxied
    admin = manager.service(Caller.local_admin())
    own = await admin.create_session(create("own", proxy=PROXY))
    default = await admin.create_session(create("default"))
    await clock.advance(0)
    assert dialled(engine, own.id) == PROXY
    assert dialled(engine, default.id) == DEFAULT
    assert (await admin.get_session(default.id)).settings.proxy is None  # the default is not copied in
    # A restart makes a new engine session: it is given the proxy again.
    await admin.restart(own.id)
    await clock.advance(0)
    assert dialled(engine, own.id) == PROXY


async def test_a_new_proxy_reconnects_a_running_session_through_it_at_once(
    proxied: tuple[SessionManager, SimulatedEngine], clock: FakeClock
) -> None:
    manager, engine = proxied
    admin = manager.service(Caller.local_admin())
    session = await linked(admin, clock, "moving", proxy=PROXY)
    before = engine.phone(session.id)
    changed = await admin.update_session(session.id, patch(proxy="socks5://carol:n3w-Pw@other.example:1080"))
    await clock.advance(0)
    assert engine.phone(session.id) is not before
    assert dialled(engine, session.id) == "socks5://carol:n3w-Pw@other.example:1080"
    assert changed.settings.proxy == "socks5://carol:n3w-Pw@other.example:1080"
    now = await admin.get_session(session.id)
    assert now.status is Status.CONNECTED and now.linked  # resumed with its stored link, no QR
    events = [(e.type, e.payload) for e in await manager.store.read_events(session_id=session.id, limit=1000)]
    tail = [p["to"] for t, p in events if t is EventType.STATUS][-3:]
    assert tail == ["stopped", "initializing", "connected"]

    # The masked address sent back (a client that read the session and PATCHes it whole) keeps
    # the password, and restarts nothing.
    current = engine.phone(session.id)
    same = await admin.update_session(session.id, patch(proxy="socks5://carol:***@other.example:1080"))
    assert same.settings.proxy == "socks5://carol:n3w-Pw@other.example:1080"
    assert engine.phone(session.id) is current

    # Other settings restart nothing either.
    await admin.update_session(session.id, patch(auto_reconnect=False))
    assert engine.phone(session.id) is current

    # null drops the session's own proxy: back to WATUI_PROXY, at once.
    cleared = await admin.update_session(session.id, patch(proxy=None))
    await clock.advance(0)
    assert cleared.settings.proxy is None
    assert dialled(engine, session.id) == DEFAULT


async def test_a_stopped_session_takes_its_new_proxy_at_the_next_start(
    admin: ScopedService, engine: SimulatedEngine, clock: FakeClock
) -> None:
    session = await admin.create_session(SessionCreate(name="parked", start=False))
    updated = await admin.update_session(session.id, patch(proxy=PROXY))
    assert updated.status is Status.STOPPED  # nothing to reconnect
    await admin.start(session.id)
    await clock.advance(0)
    assert dialled(engine, session.id) == PROXY


async def test_an_engine_error_quoting_the_proxy_does_not_leak_its_password(
    manager: SessionManager, admin: ScopedService, engine: SimulatedEngine, clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    session = await admin.create_session(create("unreachable", proxy=UNREACHABLE))
    await clock.advance(0)
    failed = await admin.get_session(session.id)
    assert failed.status is Status.FAILED
    assert failed.reason == "cannot reach the proxy socks5://alice:***@proxy.invalid:1080"
    [error] = [e for e in await admin.list_events(session_id=session.id) if e.type is EventType.ERROR]
    assert error.payload["code"] == "proxy_unreachable"
    # The engine's own text quoted the address in full; the log has it masked.
    assert error.payload["details"] == "dial socks5://alice:***@proxy.invalid:1080: lookup proxy.invalid: no such host"
    logged = await everything_logged(manager)
    assert "proxy.invalid" in logged and "s3cret-Pw" not in logged
    assert "s3cret-Pw" not in caplog.text
    assert "connects through the proxy socks5://alice:***@proxy.invalid:1080" in caplog.text


async def test_nothing_logged_shows_the_password(
    proxied: tuple[SessionManager, SimulatedEngine], clock: FakeClock, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    manager, _engine = proxied
    admin = manager.service(Caller.local_admin())
    session = await linked(admin, clock, "chatty", proxy=PROXY)
    await admin.simulate(session.id, SimulateRequest(action="message", text="hi"))
    await admin.simulate(session.id, SimulateRequest(action="disconnect"))
    await clock.advance(5)
    await admin.update_session(session.id, patch(proxy="socks5://alice:s3cret-Pw@next.example:1080"))
    await clock.advance(0)
    logged = await everything_logged(manager)
    assert "connected" in logged and "status" in logged
    for secret in SECRETS:
        assert secret not in logged
        assert secret not in caplog.text
    assert "connects through the proxy socks5://alice:***@proxy.example:1080" in caplog.text
    assert "connects through the proxy socks5://alice:***@next.example:1080" in caplog.text


# ==================================================================== webhooks


async def test_webhooks_never_carry_the_password(tmp_path: Path, receivers: Callable[..., Receiver]) -> None:
    receiver = receivers()
    await receiver.start()
    settings = Settings(data_dir=tmp_path / "data", engine="simulated", sqlite_synchronous="NORMAL",
                        webhook_allow_private=True, proxy=DEFAULT)
    engine = SimulatedEngine(clock=RealClock(), connect_latency=0.0, link_latency=0.0, seed="proxy")
    manager = await SessionManager.open(settings, engine=engine, clock=RealClock())
    try:
        assert manager.webhooks is not None
        manager.webhooks.options = WebhookOptions(base_delay=0.05, max_delay=0.4, poll_interval=0.05,
                                                  shutdown_grace=0.5)
        admin = manager.service(Caller.local_admin())
        hooked = await admin.create_session(create("hooked", webhook_url=receiver.url(), proxy=UNREACHABLE))
        await admin.create_session(create("hooked-default", webhook_url=receiver.url("/d")))

        async def delivered() -> bool:
            types = {(r.path, r.json()["type"]) for r in receiver.requests}
            return ("/hook", "error") in types and ("/d", "status") in types

        deadline = asyncio.get_running_loop().time() + 15
        while not await delivered():
            assert asyncio.get_running_loop().time() < deadline, "webhooks were not delivered"
            await asyncio.sleep(0.02)
        bodies = b"\n".join(r.body for r in receiver.requests)
        assert b"proxy.invalid" in bodies  # the error says which proxy
        for secret in SECRETS:
            assert secret.encode() not in bodies
        assert (await admin.get_session(hooked.id)).status is Status.FAILED
    finally:
        await manager.aclose()


# ==================================================================== connection details


async def test_connection_details_after_a_link_and_after_a_restart(
    tmp_path: Path, settings: Settings, clock: FakeClock
) -> None:
    engine = SimulatedEngine(clock=clock, seed=5)
    manager = await SessionManager.open(settings, engine=engine, clock=clock)
    admin = manager.service(Caller.local_admin())
    session = await admin.create_session(SessionCreate(name="details"))
    await clock.advance(0)
    assert (await admin.get_session(session.id)).connection is None  # nothing known yet
    await admin.simulate(session.id, SimulateRequest(action="scan"))
    linked_at = clock.now()
    await clock.advance(0)
    session = await admin.get_session(session.id)
    assert session.connection is not None
    assert session.connection.platform == "android"
    assert session.connection.push_name == session.push_name and session.push_name
    assert session.connection.business_name is None
    assert session.connection.connected_at == linked_at == session.connected_at
    await manager.drain_all()
    [connected] = [e for e in await admin.list_events(session_id=session.id) if e.type is EventType.CONNECTED]
    assert connected.payload["platform"] == "android" and connected.payload["business_name"] is None
    await manager.aclose()

    # Kept with the session: a new process reads it back before anything reconnects.
    manager = await SessionManager.open(settings, engine=SimulatedEngine(clock=clock, seed=5), clock=clock,
                                        restore=False)
    admin = manager.service(Caller.local_admin())
    again = await admin.get_session(session.id)
    assert again.connection == session.connection
    # A reconnect (the stored link) updates when, and keeps what the engine said before.
    await clock.advance(60)
    await admin.start(session.id)
    await clock.advance(0)
    resumed = await admin.get_session(session.id)
    assert resumed.status is Status.CONNECTED
    assert resumed.connection is not None and resumed.connection.platform == "android"
    assert resumed.connection.connected_at == clock.now() != linked_at
    # A logout forgets the phone: a new link may be another one.
    logged_out = await admin.logout(session.id)
    assert logged_out.connection is None
    await manager.aclose()


def test_a_bad_watui_proxy_stops_the_server_naming_it_without_its_password(tmp_path: Path) -> None:
    env = {**os.environ, "WATUI_PROXY": "ftp://alice:s3cret-Pw@proxy.example:21", "WATUI_DATA_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "watui", "serve", "--engine", "simulated", "--port", "0"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "WATUI_PROXY: proxy must be socks5://" in run.stderr and "got scheme 'ftp'" in run.stderr
    assert "s3cret-Pw" not in run.stderr + run.stdout
    assert "Traceback" not in run.stderr


async def test_a_business_account_and_what_a_reconnect_does_not_repeat(
    manager: SessionManager, admin: ScopedService, clock: FakeClock
) -> None:
    session = await linked(admin, clock, "shop")
    runtime = manager.supervisor.runtimes[session.id]
    assert session.jid and session.phone_number
    # The connection drops; the next one says the account is WhatsApp Business on Android,
    # with its verified name (the engine reports it connected before the back-off is over).
    await admin.simulate(session.id, SimulateRequest(action="disconnect"))
    runtime.report(SessionConnected(session.jid, session.phone_number, "Shop", platform="smba",
                                    business_name="Acme Shoes"))
    await manager.drain(session.id)
    first = (await admin.get_session(session.id)).connection
    assert first is not None and (first.platform, first.push_name, first.business_name) == ("smba", "Shop", "Acme Shoes")
    # A later connect that says less (an engine that learns the name only at the link) keeps it.
    await clock.advance(30)
    runtime.report(SessionDisconnected("connection_lost"))
    runtime.report(SessionConnected(session.jid, session.phone_number))
    await manager.drain(session.id)
    later = (await admin.get_session(session.id)).connection
    assert later is not None
    assert (later.platform, later.push_name, later.business_name) == ("smba", "Shop", "Acme Shoes")
    assert later.connected_at == clock.now() != first.connected_at
