"""A session's proxy crosses the pipe to the engine in its host process (issue 21).

The simulated engine runs in real host processes: it logs the proxy it connects through
(masked) to its stderr, which watui copies into its own log, and it fails a proxy it cannot
reach (a ``.invalid`` name) with a dialer's error that quotes the address in full, which the
manager masks before anything records it.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import pytest
from hosts_helpers import hosted, open_manager, wait_for

from watui.engines.base import SessionOptions
from watui.engines.hosts.wire import WireError, decode_options, encode_options
from watui.machine import EventType, Status
from watui.manager import ScopedService
from watui.models import Caller, SessionCreate, SessionUpdate, SimulateRequest

PROXY = "socks5://alice:s3cret-Pw@proxy.example:1080"
DEFAULT = "http://bob:def4ult-Pw@gateway.example:3128"


def test_options_cross_the_wire_as_a_json_object() -> None:
    options = SessionOptions(proxy=PROXY, download_media=False, media_dir="/data/media/ses_1")
    encoded = encode_options(options)
    assert encoded == {"proxy": PROXY, "download_media": False, "media_dir": "/data/media/ses_1"}
    assert decode_options(encoded) == options
    assert encode_options(None) is None and decode_options(None) is None
    # A newer watui may send a field this host does not know: it is left out, not fatal.
    assert decode_options({**encoded, "later": 1}) == options
    with pytest.raises(WireError):
        decode_options(["not", "an", "object"])  # type: ignore[arg-type]


async def test_the_engine_in_the_host_dials_the_session_proxy_or_the_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    engine = hosted()
    manager = await open_manager(tmp_path, engine, proxy=DEFAULT)
    admin = manager.service(Caller.local_admin())
    try:
        own = await admin.create_session(SessionCreate.model_validate({"name": "own", "settings": {"proxy": PROXY}}))
        default = await admin.create_session(SessionCreate(name="default"))
        for sid in (own.id, default.id):
            await wait_for(partial(_status, admin, sid, Status.QR_READY), f"{sid} shows a QR code")
        await wait_for(lambda: "socks5://alice:***@proxy.example:1080" in caplog.text, "the host's log of the proxy")
        await wait_for(lambda: "http://bob:***@gateway.example:3128" in caplog.text, "the host's log of the default")
        assert f"session {own.id} connects through the proxy socks5://alice:***@proxy.example:1080" in caplog.text
        assert f"session {default.id} connects through the proxy http://bob:***@gateway.example:3128" in caplog.text

        # An unreachable proxy: the engine in the host fails the connect; nothing keeps the
        # password it quoted.
        await admin.update_session(own.id, SessionUpdate.model_validate(
            {"settings": {"proxy": "socks5://alice:s3cret-Pw@proxy.invalid:1080"}}))
        await wait_for(lambda: _status(admin, own.id, Status.FAILED), "the unreachable proxy to fail the session")
        await manager.drain_all()
        [error] = [e for e in await admin.list_events(session_id=own.id) if e.type is EventType.ERROR]
        assert error.payload["code"] == "proxy_unreachable"
        assert error.payload["details"].startswith("dial socks5://alice:***@proxy.invalid:1080")
        logged = "\n".join(e.model_dump_json() for e in await admin.list_events(limit=10_000))
        assert "s3cret-Pw" not in logged and "def4ult-Pw" not in logged
        assert "s3cret-Pw" not in caplog.text and "def4ult-Pw" not in caplog.text

        # The session linked through its default proxy works as any other.
        await admin.simulate(default.id, SimulateRequest(action="scan"))
        await wait_for(lambda: _status(admin, default.id, Status.CONNECTED), "default connected")
        connected = await admin.get_session(default.id)
        assert connected.connection is not None and connected.connection.platform == "android"
    finally:
        await manager.aclose()


async def _status(admin: ScopedService, session_id: str, status: Status) -> bool:
    return (await admin.get_session(session_id)).status is status
