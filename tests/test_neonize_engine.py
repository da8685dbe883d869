"""The neonize engine against the real neonize library (its Go core included).

WhatsApp's servers are not reachable from the test machines, so the live tests exercise what
can be real here: dial failures (DNS, a refused proxy, a proxy that never answers), the thread
and shutdown behaviour around the blocking Go call, the auth databases neonize creates, and
the event mapping fed with neonize's own protobuf events as they come off the wire.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from neonize.events import EVENT_TO_INT, INT_TO_EVENT
from neonize.proto import Neonize_pb2 as pb
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    ExtendedTextMessage,
    ImageMessage,
)
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    Message as E2EMessage,
)

from watui.engines.base import (
    EngineEvent,
    IncomingMessage,
    LoggedOut,
    MessageReceipt,
    PairingWindowClosed,
    PairSuccess,
    QrCodeIssued,
    SessionConnected,
    SessionDisconnected,
    SessionError,
)
from watui.engines.neonize import NeonizeEngine, NeonizeEngineError
from watui.engines.neonize.go import _StartGate
from watui.engines.neonize.mapping import map_event, map_login_status, outgoing_text
from watui.engines.neonize.run import _Run

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


class Recorder:
    """A ``report`` callable that also checks it is called on the loop's thread."""

    def __init__(self) -> None:
        self.events: list[EngineEvent] = []
        self.threads: set[int] = set()
        self._queue: asyncio.Queue[EngineEvent] = asyncio.Queue()

    def __call__(self, event: EngineEvent) -> None:
        self.threads.add(threading.get_ident())
        self.events.append(event)
        self._queue.put_nowait(event)

    async def next(self, timeout: float = 15.0) -> EngineEvent:
        return await asyncio.wait_for(self._queue.get(), timeout)


def run_threads(session_id: str) -> list[threading.Thread]:
    return [
        t for t in threading.enumerate() if t.name == f"watui-neonize-{session_id}" and t.is_alive()
    ]


def non_daemon_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if not t.daemon and t.is_alive()}


@pytest.fixture
def silent_proxy() -> Iterator[str]:
    """A TCP listener that never answers: a proxy on a network that swallows packets."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        srv.close()


@pytest.fixture
def refused_proxy() -> str:
    """A proxy URL on a local port nobody listens on: the dial is refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"socks5://127.0.0.1:{port}"


def seed_device(db: Path, user: str = "4915112345678") -> None:
    """Write a device row into a whatsmeow database that neonize created (the real schema)."""
    rnd = os.urandom
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO whatsmeow_device (jid, registration_id, noise_key, identity_key,"
            " signed_pre_key, signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details,"
            " adv_account_sig, adv_account_sig_key, adv_device_sig, push_name)"
            " VALUES (?, 1, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, 'Ada')",
            (
                f"{user}:7@s.whatsapp.net",
                rnd(32),
                rnd(32),
                rnd(32),
                rnd(64),
                rnd(32),
                rnd(16),
                rnd(64),
                rnd(32),
                rnd(64),
            ),
        )


async def make_auth_db(tmp_path: Path, session_id: str, proxy: str) -> Path:
    """Let neonize create a session's auth db for real (a connect that fails to dial)."""
    engine = NeonizeEngine(proxy=proxy)
    report = Recorder()
    path = tmp_path / "auth" / f"{session_id}.db"
    session = engine.session(session_id, report, auth_path=path)
    await session.connect()
    assert isinstance(await report.next(), SessionError)
    await session.close()
    return path


# --------------------------------------------------------------------------- live: dialing


@pytest.mark.slow
async def test_offline_connect_reports_the_dial_error_then_closes_cleanly(tmp_path: Path) -> None:
    before = non_daemon_threads()
    engine = NeonizeEngine()
    report = Recorder()
    auth = tmp_path / "auth" / "s1.db"
    session = engine.session("s1", report, auth_path=auth)

    started = time.monotonic()
    await session.connect()
    assert session._run is not None and session._run.new_device  # no auth yet: a fresh link
    event = await report.next(timeout=20)
    if isinstance(event, QrCodeIssued):  # pragma: no cover - only where WhatsApp is reachable
        await session.close()
        pytest.skip("web.whatsapp.com is reachable here; this test is about the offline path")
    assert isinstance(event, SessionError)
    assert event.code == "connect_failed"
    # Said in words (here: no DNS, or no route), with Go's own text beside it.
    assert event.message.startswith("cannot reach WhatsApp: "), event
    assert event.details and "failed to dial whatsapp web websocket" in event.details
    assert time.monotonic() - started < 15

    t0 = time.monotonic()
    await session.close()
    await engine.aclose()
    assert time.monotonic() - t0 < 2.5
    assert run_threads("s1") == []
    assert non_daemon_threads() <= before
    # Reports only ever ran on the event loop's thread.
    assert report.threads == {threading.get_ident()}
    # neonize created the session's own db at the given path, without a linked device.
    assert auth.is_file()
    assert not await engine.has_auth("s1", auth)
    await asyncio.sleep(0.2)
    assert report.events == [event]  # nothing more after the failure and the close


async def test_refused_dial_fails_fast_with_whatsmeows_message(
    tmp_path: Path, refused_proxy: str
) -> None:
    engine = NeonizeEngine(proxy=refused_proxy)
    report = Recorder()
    session = engine.session("r1", report, auth_path=tmp_path / "r1.db")
    await session.connect()
    event = await report.next(timeout=10)
    assert isinstance(event, SessionError)
    assert event.code == "connect_failed"
    port = refused_proxy.rsplit(":", 1)[1]
    assert event.message == f"cannot reach WhatsApp: connection refused by the proxy at 127.0.0.1:{port}"
    assert event.details and "failed to dial whatsapp web websocket" in event.details
    await session.close()
    assert run_threads("r1") == []


async def test_watchdog_fails_an_attempt_on_a_silent_network(
    tmp_path: Path, silent_proxy: str
) -> None:
    """whatsmeow waits 60 s on a silent network; the engine gives up after connect_timeout."""
    engine = NeonizeEngine(proxy=silent_proxy, connect_timeout=1.0)
    report = Recorder()
    session = engine.session("w1", report, auth_path=tmp_path / "w1.db")
    started = time.monotonic()
    await session.connect()
    event = await report.next(timeout=10)
    assert isinstance(event, SessionError)
    assert event.code == "connect_timeout"
    assert 0.9 < time.monotonic() - started < 5
    t0 = time.monotonic()
    await session.close()
    assert time.monotonic() - t0 < 1.0  # even though the Go dial is still waiting
    await asyncio.sleep(0.3)
    assert report.events == [event]


async def test_a_session_can_reconnect_after_a_failure(tmp_path: Path, refused_proxy: str) -> None:
    engine = NeonizeEngine(proxy=refused_proxy)
    report = Recorder()
    session = engine.session("again", report, auth_path=tmp_path / "again.db")
    for _ in range(3):
        await session.connect()
        assert isinstance(await report.next(), SessionError)
        await session.disconnect()
    await session.close()
    assert len(report.events) == 3
    assert run_threads("again") == []
    with pytest.raises(NeonizeEngineError):
        await session.connect()  # closed for good


async def test_many_sessions_start_at_once_without_crashing_neonize(
    tmp_path: Path, refused_proxy: str
) -> None:
    """neonize's Go maps are unlocked; concurrent start-ups must be serialised by the engine."""
    engine = NeonizeEngine(proxy=refused_proxy)
    reports = {f"m{i}": Recorder() for i in range(12)}
    sessions = [
        engine.session(sid, rep, auth_path=tmp_path / "auth" / f"{sid}.db")
        for sid, rep in reports.items()
    ]
    await asyncio.gather(*(s.connect() for s in sessions))
    events = await asyncio.gather(*(rep.next() for rep in reports.values()))
    assert all(isinstance(e, SessionError) and e.code == "connect_failed" for e in events)
    await engine.aclose()
    # Each session got its own database, and nothing else was created.
    assert sorted(p.name for p in (tmp_path / "auth").iterdir()) == sorted(
        f"{sid}.db" for sid in reports
    )
    assert all(run_threads(sid) == [] for sid in reports)


async def test_a_linked_session_resumes_its_device_instead_of_pairing(
    tmp_path: Path, refused_proxy: str
) -> None:
    """With a device in its db, connect() resumes it (neonize would otherwise show QR codes)."""
    path = await make_auth_db(tmp_path, "linked", refused_proxy)
    seed_device(path)
    engine = NeonizeEngine(proxy=refused_proxy)
    assert await engine.has_auth("linked", path)
    report = Recorder()
    session = engine.session("linked", report, auth_path=path)
    await session.connect()
    assert session._run is not None and not session._run.new_device  # resume, don't re-pair
    event = await report.next()
    assert isinstance(event, SessionError) and "connection refused" in event.message
    await session.close()
    # Resuming must not have added a second, fresh device next to the linked one.
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT jid FROM whatsmeow_device").fetchall() == [
            ("4915112345678:7@s.whatsapp.net",)
        ]


@pytest.mark.slow
def test_a_process_using_the_engine_exits_promptly(tmp_path: Path) -> None:
    """The strongest shutdown check: nothing neonize left behind may hold the process open.

    The second session is abandoned by the watchdog while its Go dial is still waiting (for
    up to 60 s); the interpreter must exit regardless.
    """
    script = textwrap.dedent(
        """
        import asyncio, socket, sys
        from pathlib import Path
        from watui.engines.neonize import NeonizeEngine

        # Module-global, so the listener stays open until the interpreter itself goes away.
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(8)

        async def main(root):
            results = []
            for sid, engine in (
                ("plain", NeonizeEngine()),
                ("silent", NeonizeEngine(proxy=f"http://127.0.0.1:{srv.getsockname()[1]}",
                                         connect_timeout=1.0)),
            ):
                queue = asyncio.Queue()
                session = engine.session(sid, queue.put_nowait, auth_path=root / f"{sid}.db")
                await session.connect()
                event = await asyncio.wait_for(queue.get(), 20)
                results.append(f"{sid}:{type(event).__name__}:{getattr(event, 'code', '')}")
                await session.close()
                await engine.aclose()
            print("RESULT", " ".join(results), flush=True)

        asyncio.run(main(Path(sys.argv[1])))
        """
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=45,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
    assert "silent:SessionError:connect_timeout" in result
    assert "plain:SessionError:connect_failed" in result or "plain:QrCodeIssued" in result
    assert elapsed < 20, f"took {elapsed:.1f} s to exit"


# --------------------------------------------------------------------------- auth databases


async def test_has_auth_is_false_for_missing_and_foreign_files(tmp_path: Path) -> None:
    engine = NeonizeEngine()
    assert not await engine.has_auth("x", tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()  # looking must not create it
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    assert not await engine.has_auth("x", junk)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    assert not await engine.has_auth("x", other)


async def test_has_auth_needs_a_device_and_remove_auth_deletes_everything(
    tmp_path: Path, refused_proxy: str
) -> None:
    path = await make_auth_db(tmp_path, "a1", refused_proxy)
    engine = NeonizeEngine()
    assert path.is_file() and not await engine.has_auth("a1", path)  # schema, but no device
    seed_device(path)
    assert await engine.has_auth("a1", path)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).write_bytes(b"x")
    sibling = await make_auth_db(tmp_path, "a2", refused_proxy)
    seed_device(sibling, user="33600000000")

    await engine.remove_auth("a1", path)
    assert not await engine.has_auth("a1", path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["a2.db"]  # only a1's files went
    assert await engine.has_auth("a2", sibling)
    await engine.remove_auth("a1", path)  # idempotent


# --------------------------------------------------------------------------- API guards


async def test_send_and_pair_refuse_clearly_without_a_connection(tmp_path: Path) -> None:
    engine = NeonizeEngine()
    session = engine.session("g1", Recorder(), auth_path=tmp_path / "g1.db")
    with pytest.raises(NeonizeEngineError, match="not connected"):
        await session.send_text("4915112345678", "hi")
    with pytest.raises(NeonizeEngineError, match="not started"):
        await session.pair_phone("4915112345678")
    with pytest.raises(NeonizeEngineError, match="phone number"):
        await session.send_text("not-a-number", "hi")
    with pytest.raises(NeonizeEngineError, match="phone number"):
        await session.pair_phone("+12")
    await session.logout()  # nothing to unlink: still idempotent and quiet
    await session.close()


async def test_pair_phone_gives_up_when_pairing_never_starts(
    tmp_path: Path, silent_proxy: str
) -> None:
    engine = NeonizeEngine(proxy=silent_proxy, connect_timeout=0.5)
    report = Recorder()
    session = engine.session("p1", report, auth_path=tmp_path / "p1.db")
    await session.connect()
    with pytest.raises(NeonizeEngineError):
        await session.pair_phone("+49 151 1234-5678")
    await session.close()


# --------------------------------------------------------------------------- event mapping


def complete(message: Any) -> Any:
    """Fill every unset proto2 *required* field with its default, as neonize's Go encoders do
    (they always set every field), so the event serialises exactly like one off the wire."""
    for field in message.DESCRIPTOR.fields:
        if field.is_repeated:
            if field.message_type is not None:
                for item in getattr(message, field.name):
                    complete(item)
            continue
        if field.message_type is not None:
            if field.is_required or message.HasField(field.name):
                sub = getattr(message, field.name)
                sub.SetInParent()
                complete(sub)
        elif field.is_required and not message.HasField(field.name):
            setattr(message, field.name, field.default_value)
    return message


def wire(event: Any) -> Any:
    """Serialise and parse back the way neonize's callback does (code -> class -> FromString)."""
    code = EVENT_TO_INT[type(event)]
    return INT_TO_EVENT[code].FromString(complete(event).SerializeToString())


ME = pb.Device(
    JID=pb.JID(User="4915112345678", Device=12, Server="s.whatsapp.net"),
    PushName="Ada",
)


def test_pair_status_success_and_error() -> None:
    ok = pb.PairStatus(
        ID=pb.JID(User="4915112345678", Device=3, Server="s.whatsapp.net"),
        Platform="android",
        Status=pb.PairStatus.SUCCESS,
    )
    assert map_event(wire(ok)) == PairSuccess(
        jid="4915112345678:3@s.whatsapp.net", phone_number="4915112345678", platform="android"
    )
    bad = pb.PairStatus(Status=pb.PairStatus.ERROR, Error="invalid device signature")
    mapped = map_event(wire(bad))
    assert isinstance(mapped, SessionError) and mapped.code == "pair_error"
    assert "invalid device signature" in mapped.message


def test_connected_takes_its_identity_from_the_device_event() -> None:
    connected = wire(pb.Connected(status=True))
    assert map_event(connected, ME) == SessionConnected(
        jid="4915112345678:12@s.whatsapp.net", phone_number="4915112345678", push_name="Ada"
    )
    assert map_event(connected, None) == SessionConnected(jid="", phone_number="")


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (pb.Disconnected(status=True), SessionDisconnected(reason="connection_lost")),
        (pb.StreamReplaced(), SessionDisconnected(reason="stream_replaced")),
        # whatsmeow retries keep-alives itself for minutes: a missed ping is not a disconnect.
        (pb.KeepAliveTimeout(ErrorCount=3, LastSuccess=1), None),
        (pb.KeepAliveRestored(), None),
        (pb.LoggedOut(OnConnect=True, Reason=pb.MAIN_DEVICE_GONE), LoggedOut(reason="logged_out")),
        (pb.QR(Codes=["2@abc,def,ghi", "2@second"]), QrCodeIssued(code="2@abc,def,ghi")),
        (pb.QR(), None),
        (pb.Receipt(), None),  # no message ids: nothing to update
    ],
)
def test_connection_events(event: Any, expected: EngineEvent | None) -> None:
    assert map_event(wire(event), ME) == expected


def test_temporary_ban_and_connect_failure_are_errors_with_their_details() -> None:
    ban = map_event(wire(pb.TemporaryBan(Code=pb.TemporaryBan.BLOCKED_BY_USERS, Expire=3600)))
    assert isinstance(ban, SessionError) and ban.code == "temporary_ban"
    assert "BLOCKED_BY_USERS" in ban.message and "3600" in ban.message
    failure = map_event(wire(pb.ConnectFailure(Reason=pb.SERVICE_UNAVAILABLE, Message="try later")))
    assert isinstance(failure, SessionError) and failure.code == "connect_failure"
    assert "SERVICE_UNAVAILABLE" in failure.message and "try later" in failure.message
    outdated = map_event(wire(pb.ClientOutdated()))
    assert isinstance(outdated, SessionError) and outdated.code == "client_outdated"


def _message(body: E2EMessage, *, ts: int = 1_700_000_000_123, from_me: bool = False) -> Any:
    return wire(
        pb.Message(
            Info=pb.MessageInfo(
                ID="3EB0ABCDEF",
                Pushname="Bob",
                Timestamp=ts,
                MessageSource=pb.MessageSource(
                    Chat=pb.JID(User="4917000000001", Server="s.whatsapp.net"),
                    Sender=pb.JID(User="4917000000001", Server="s.whatsapp.net"),
                    IsFromMe=from_me,
                ),
            ),
            Message=body,
        )
    )


def test_text_messages_become_incoming_messages() -> None:
    got = map_event(_message(E2EMessage(conversation="hello")))
    assert got == IncomingMessage(
        chat="4917000000001",  # a user's chat id is the phone number's digits
        text="hello",
        message_id="3EB0ABCDEF",
        timestamp=datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC),
        sender="4917000000001",
        from_me=False,
        extra={"push_name": "Bob"},
    )
    extended = map_event(
        _message(
            E2EMessage(extendedTextMessage=ExtendedTextMessage(text="see https://x.y")),
            from_me=True,
        )
    )
    assert isinstance(extended, IncomingMessage)
    assert extended.text == "see https://x.y" and extended.from_me
    caption = map_event(_message(E2EMessage(imageMessage=ImageMessage(caption="a cat"))))
    assert isinstance(caption, IncomingMessage) and caption.text == "a cat"
    seconds = map_event(_message(E2EMessage(conversation="old"), ts=1_700_000_000))
    assert isinstance(seconds, IncomingMessage)
    assert seconds.timestamp == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def test_messages_of_no_type_of_ours_are_not_reported() -> None:
    # An image without a caption is a message (type image, no text: see test_neonize_media).
    image = map_event(_message(E2EMessage(imageMessage=ImageMessage())))
    assert isinstance(image, IncomingMessage) and (image.type, image.text) == ("image", "")
    assert map_event(_message(E2EMessage())) is None
    assert map_event(_message(E2EMessage(conversation=""))) is None


def test_login_statuses() -> None:
    assert map_login_status("success") is None
    # The QR channel closed without a link: the code on screen (QR or pairing code) is dead.
    assert map_login_status("timeout") == PairingWindowClosed()
    outdated = map_login_status("err-client-outdated")
    assert isinstance(outdated, SessionError) and outdated.code == "client_outdated"
    assert isinstance(map_login_status("error"), SessionError)


# --------------------------------------------------------------------------- the thread hop


async def test_callbacks_from_a_foreign_thread_reach_report_on_the_loop(tmp_path: Path) -> None:
    """Drive the run's ctypes callbacks the way Go does: raw bytes, from another thread."""
    engine = NeonizeEngine()
    report = Recorder()
    session = engine.session("hop", report, auth_path=tmp_path / "hop.db")
    run = _Run(session, asyncio.get_running_loop(), new_device=True, options=engine.options)
    keep: list[object] = []

    def call_event(event: Any) -> None:
        data = complete(event).SerializeToString()
        buf = ctypes.create_string_buffer(data, len(data))
        keep.append(buf)
        code = 0 if isinstance(event, pb.Device) else EVENT_TO_INT[type(event)]
        run._on_event(0, ctypes.addressof(buf), len(data), code)

    def go_side() -> None:
        qr = ctypes.create_string_buffer(b"2@first-code,keys")
        run._on_qr(0, ctypes.addressof(qr))
        call_event(ME)
        call_event(pb.Connected(status=True))
        call_event(pb.Receipt())
        call_event(pb.LoggedOut(OnConnect=False))

    # Stop() is a real Go call: with no client registered under the run's id it is a no-op.
    worker = threading.Thread(target=go_side)
    worker.start()
    await asyncio.to_thread(worker.join)
    for _ in range(3):
        await report.next(timeout=5)
    assert report.events == [
        QrCodeIssued(code="2@first-code,keys"),
        SessionConnected(
            jid="4915112345678:12@s.whatsapp.net", phone_number="4915112345678", push_name="Ada"
        ),
        LoggedOut(),
    ]
    assert report.threads == {threading.get_ident()}
    assert run.first_qr.is_set() and run.in_loop

    # Once abandoned (what disconnect() does), late callbacks are dropped.
    run.abandoned = True
    await asyncio.to_thread(call_event, pb.Disconnected(status=True))
    await asyncio.sleep(0.1)
    assert len(report.events) == 3


# --------------------------------------------------------------------------- chat identity


def _jid(user: str, server: str, device: int = 0) -> Any:
    return pb.JID(User=user, Server=server, Device=device)


def _event(source: Any, text: str = "hi", msg_id: str = "3EB0C0FFEE") -> Any:
    return wire(
        pb.Message(
            Info=pb.MessageInfo(
                ID=msg_id, Timestamp=1_700_000_000_000, MessageSource=source, Pushname="Eve"
            ),
            Message=E2EMessage(conversation=text),
        )
    )


PHONE = "4917000000001"
LID = "123456789012345"


def test_a_lid_chat_is_answered_by_the_phone_number_in_its_alt_field() -> None:
    incoming = map_event(
        _event(
            pb.MessageSource(
                Chat=_jid(LID, "lid"),
                Sender=_jid(LID, "lid", device=3),
                SenderAlt=_jid(PHONE, "s.whatsapp.net", device=3),
                AddressingMode=pb.LID,
            )
        )
    )
    assert isinstance(incoming, IncomingMessage)
    assert incoming.chat == PHONE and incoming.sender == PHONE and not incoming.from_me
    # Without the alt field there is no number to answer; the LID stays the chat id.
    bare = map_event(_event(pb.MessageSource(Chat=_jid(LID, "lid"), Sender=_jid(LID, "lid"))))
    assert isinstance(bare, IncomingMessage) and bare.chat == f"{LID}@lid"


def test_a_message_typed_on_the_phone_is_outgoing_in_the_same_chat() -> None:
    typed = map_event(
        _event(
            pb.MessageSource(
                Chat=_jid(LID, "lid"),
                Sender=_jid("999000111222333", "lid"),
                IsFromMe=True,
                SenderAlt=_jid("4915112345678", "s.whatsapp.net"),
                RecipientAlt=_jid(PHONE, "s.whatsapp.net"),
            ),
            text="sent from my phone",
        )
    )
    assert isinstance(typed, IncomingMessage)
    assert typed.from_me and typed.chat == PHONE  # the same chat id as their messages
    by_number = map_event(
        _event(
            pb.MessageSource(
                Chat=_jid(PHONE, "s.whatsapp.net"),
                Sender=_jid("4915112345678", "s.whatsapp.net", device=0),
                IsFromMe=True,
            )
        )
    )
    assert isinstance(by_number, IncomingMessage) and by_number.chat == PHONE and by_number.from_me


def test_a_group_message_keeps_the_group_id_and_names_the_participant() -> None:
    group = map_event(
        _event(
            pb.MessageSource(
                Chat=_jid("120363012345678901", "g.us"),
                Sender=_jid(LID, "lid", device=2),
                SenderAlt=_jid(PHONE, "s.whatsapp.net"),
                IsGroup=True,
            ),
            text="@4915112345678 see you at 8",
        )
    )
    assert isinstance(group, IncomingMessage)
    assert group.chat == "120363012345678901@g.us" and group.sender == PHONE
    assert group.text == "@4915112345678 see you at 8"


def test_status_updates_are_not_chat_messages() -> None:
    status = _event(
        pb.MessageSource(Chat=_jid("status", "broadcast"), Sender=_jid(PHONE, "s.whatsapp.net")),
        text="my holiday",
    )
    assert map_event(status) is None


def _receipt(kind: Any, *, from_me: bool = False, chat: Any = None) -> Any:
    return wire(
        pb.Receipt(
            MessageSource=pb.MessageSource(
                Chat=chat if chat is not None else _jid(PHONE, "s.whatsapp.net"),
                Sender=_jid(PHONE, "s.whatsapp.net"),
                IsFromMe=from_me,
            ),
            MessageIDs=["3EB0AAA", "3EB0BBB"],
            Timestamp=1_700_000_001,
            Type=kind,
        )
    )


def test_delivered_and_read_receipts() -> None:
    delivered = map_event(_receipt(pb.Receipt.DELIVERED))
    assert delivered == MessageReceipt(
        chat=PHONE,
        message_ids=("3EB0AAA", "3EB0BBB"),
        status="delivered",
        timestamp=datetime(2023, 11, 14, 22, 13, 21, tzinfo=UTC),
    )
    read = map_event(_receipt(pb.Receipt.READ))
    assert isinstance(read, MessageReceipt) and read.status == "read"
    played = map_event(_receipt(pb.Receipt.PLAYED))  # a voice note listened to: read
    assert isinstance(played, MessageReceipt) and played.status == "read"
    # Our own devices' receipts and other kinds say nothing about the recipient.
    assert map_event(_receipt(pb.Receipt.READ_SELF)) is None
    assert map_event(_receipt(pb.Receipt.DELIVERED, from_me=True)) is None
    assert map_event(_receipt(pb.Receipt.RETRY)) is None
    lid = map_event(_receipt(pb.Receipt.READ, chat=_jid(LID, "lid")))
    assert isinstance(lid, MessageReceipt) and lid.chat == f"{LID}@lid"


def test_passkey_statuses_fail_with_a_clear_reason() -> None:
    for status in ("passkey-request", "passkey-confirmation"):
        event = map_login_status(status)
        assert isinstance(event, SessionError) and event.code == "passkey_required"
        assert "passkey" in event.message and "cannot" in event.message


def test_text_is_sent_as_a_plain_conversation_message() -> None:
    """No mention parsing, no group look-up: what the user typed, as typed."""
    text = "@4915112345678 meet 120363012345678901@g.us at 8 <b>*bold*</b>"
    message = outgoing_text(text)
    assert message.conversation == text
    assert not message.HasField("extendedTextMessage")
    assert [f.name for f, _ in message.ListFields()] == ["conversation"]


async def test_keepalive_hiccups_neither_report_nor_stop_the_client(tmp_path: Path) -> None:
    engine = NeonizeEngine()
    report = Recorder()
    session = engine.session("ka", report, auth_path=tmp_path / "ka.db")
    run = _Run(session, asyncio.get_running_loop(), new_device=False, options=engine.options)
    keep: list[object] = []

    def call_event(event: Any) -> None:
        data = complete(event).SerializeToString()
        buf = ctypes.create_string_buffer(data, len(data))
        keep.append(buf)
        code = 0 if isinstance(event, pb.Device) else EVENT_TO_INT[type(event)]
        run._on_event(0, ctypes.addressof(buf), len(data), code)

    def go_side() -> None:
        call_event(ME)
        call_event(pb.Connected(status=True))
        call_event(pb.KeepAliveTimeout(ErrorCount=1, LastSuccess=1_700_000_000))
        call_event(pb.KeepAliveTimeout(ErrorCount=2, LastSuccess=1_700_000_000))
        call_event(pb.KeepAliveRestored())
        call_event(_receipt(pb.Receipt.DELIVERED))

    worker = threading.Thread(target=go_side)
    worker.start()
    await asyncio.to_thread(worker.join)
    await report.next(timeout=5)
    await report.next(timeout=5)
    await asyncio.sleep(0.1)
    assert [type(e) for e in report.events] == [SessionConnected, MessageReceipt]
    assert not run._stopped and not run._disconnected  # the client was left to whatsmeow


# --------------------------------------------------------------------------- the start gate


class DialLog:
    """A proxy that accepts and never answers, noting when each dial reached it."""

    def __init__(self) -> None:
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.srv.settimeout(0.05)
        self.dials: list[float] = []
        self._conns: list[socket.socket] = []
        self._open = True
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.srv.getsockname()[1]}"

    def _accept(self) -> None:
        while self._open:
            try:
                conn, _ = self.srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.dials.append(time.monotonic())
            self._conns.append(conn)

    def close(self) -> None:
        self._open = False
        self._thread.join(2)
        for conn in self._conns:
            conn.close()
        self.srv.close()


@pytest.fixture
def dial_logs() -> Iterator[list[DialLog]]:
    logs = [DialLog() for _ in range(8)]
    try:
        yield logs
    finally:
        for log in logs:
            log.close()


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_sessions_closed_while_queued_never_dial(
    tmp_path: Path, dial_logs: list[DialLog]
) -> None:
    """Real neonize, no network: attempts queued behind the start gate (held here, as another
    attempt's start would hold it) and closed there must never call Neonize(): a zombie would
    dial later and fight the live client."""
    sessions = [
        NeonizeEngine(proxy=log.url, connect_timeout=30).session(
            f"z{i}", Recorder(), auth_path=tmp_path / f"z{i}.db"
        )
        for i, log in enumerate(dial_logs)
    ]
    _StartGate.lock.acquire()
    try:
        await asyncio.gather(*(s.connect() for s in sessions))
        runs = [s._run for s in sessions]
        assert all(run is not None and not run.called for run in runs)
        await asyncio.gather(*(s.close() for s in sessions))
    finally:
        _StartGate.lock.release()
    # Each queued attempt leaves the queue (it polls), without ever calling Neonize().
    await _until(lambda: all(run is not None and run.finished.is_set() for run in runs), 10,
                 "every queued attempt to leave")
    assert not any(run is not None and run.called for run in runs)
    assert [log.dials for log in dial_logs] == [[] for _ in dial_logs]


async def test_the_watchdog_counts_from_the_real_start_of_an_attempt(
    tmp_path: Path, dial_logs: list[DialLog]
) -> None:
    """Attempts wait their turn at the start gate; the connect timeout must not run meanwhile,
    or they fail before they ever dialled."""
    logs = dial_logs[:3]
    timeout = 1.0
    recorders = [Recorder() for _ in logs]
    sessions = [
        NeonizeEngine(proxy=log.url, connect_timeout=timeout).session(
            f"wd{i}", rec, auth_path=tmp_path / f"wd{i}.db"
        )
        for i, (log, rec) in enumerate(zip(logs, recorders, strict=True))
    ]
    _StartGate.lock.acquire()  # another attempt's start, for longer than the connect timeout
    try:
        await asyncio.gather(*(s.connect() for s in sessions))
        with pytest.raises(TimeoutError):
            await recorders[0].next(timeout=2 * timeout)  # nothing is reported while queued
    finally:
        _StartGate.lock.release()
    try:
        results = [await rec.next(timeout=20) for rec in recorders]
        for i, (event, log) in enumerate(zip(results, logs, strict=True)):
            assert isinstance(event, SessionError) and event.code == "connect_timeout", event
            assert log.dials, f"session {i} timed out without ever dialling"
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
