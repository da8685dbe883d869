"""The simulated engine: a phone and WhatsApp's servers, played faithfully in-process.

It behaves the way whatsmeow does on the wire, so the demo, the tests and the benchmarks
exercise the manager exactly as the real engine would:

- a connection without credentials gets six QR codes, the first valid 60 s and the rest 20 s
  each (``https://wa.me/settings/linked_devices#ref,noise,identity,adv,clientType``, random
  base64 keys), then the server stops offering codes;
- the phone can scan the current code (pair success, then connected a moment later), or
  enter a pairing code requested for its number;
- a linked device reconnects with its stored credentials, no QR;
- those credentials (a :class:`Device`) are a small JSON file at the session's ``auth_path``,
  or, with a ``database_url`` (cluster mode), a row in PostgreSQL's ``engine_auth``
  (:mod:`watui.engines.auth`), so a session taken over by another node resumes linked. The
  row is read at connect and committed at pair success before the link is reported;
- when the codes run out the server closes the linking window (``PairingWindowClosed``, as
  whatsmeow's QR channel says "timeout");
- a sent message is ``delivered`` to the recipient's phone after ``receipt_delay`` seconds and
  ``read`` the same time later (``MessageReceipt`` facts), unless the connection dropped;
- the phone (or the network) can drop the connection, log the device out, make the engine
  fail, or send a message;
- a session's proxy (``SessionOptions.proxy``) is not dialled: the session keeps its options
  (``options``, for tests), logs the proxy (masked) at its first connect, and fails a connect
  through a proxy whose host ends in ``.invalid`` (a name that never resolves) with
  ``SessionError(code="proxy_unreachable")``, whose details quote the address in full as a
  dialer's error may (the manager masks it);
- it reports the account as an Android phone (``platform="android"``), not a business one.
- messages of every type go both ways (``send`` takes each :class:`Outgoing` type and reads a
  file as an upload would; ``sent_messages`` keeps what the recipients got); the phone's
  media messages (``play_phone`` ``message`` with a ``type``) are "downloaded" as whatsmeow
  downloads them: a private copy in ``options.media_dir`` when ``download_media`` is on.

Randomness comes from a hash of (seed, session id, counter), so a fixed seed gives the same
payloads in every run without keeping a ``random.Random`` per session.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import shutil
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from watui.models import EngineHost

from watui.clock import Clock, RealClock, TimerHandle
from watui.engines.auth import PgAuthStore
from watui.engines.base import (
    MESSAGE_TYPES,
    Contact,
    EngineRefused,
    IncomingMessage,
    Location,
    LoggedOut,
    MessageReceipt,
    Outgoing,
    PairingWindowClosed,
    PairSuccess,
    PhoneAction,
    QrCodeIssued,
    ReceivedMedia,
    Report,
    SessionConnected,
    SessionDisconnected,
    SessionError,
    SessionOptions,
)
from watui.models import mask_url

log = logging.getLogger(__name__)

PUSH_NAMES = ("Ana", "Bruno", "Chen", "Dara", "Emeka", "Farah", "Giulia", "Hiro", "Ines", "Jonas")
PLATFORM = "android"
"""The simulated phone's platform, as WhatsApp names it (``PairSuccess``, ``SessionConnected``)."""
PAIR_ALPHABET = "ABCDEFGHJKLMNPQRSTVWXYZ123456789"  # WhatsApp's linking codes avoid look-alikes


class SimulationError(EngineRefused):
    """The phone cannot do that now (e.g. scan when no code is shown)."""


@dataclass
class Device:
    """What a linked device's auth database holds."""

    jid: str
    phone_number: str
    push_name: str

    def dump(self) -> str:
        return json.dumps({"jid": self.jid, "phone_number": self.phone_number, "push_name": self.push_name})


class SimulatedSession:
    """One linked device, and the phone it belongs to."""

    def __init__(
        self, engine: SimulatedEngine, session_id: str, report: Report, auth_path: Path,
        options: SessionOptions | None = None,
    ) -> None:
        self.engine = engine
        self.session_id = session_id
        self.report = report
        self.auth_path = auth_path
        self.options = options or SessionOptions()
        """What the manager gave this session (tests read ``options.proxy``): the simulated
        network has no proxies to dial, it only says which one it would use."""
        self.state = "closed"  # closed | opening | pairing | linking | connected
        self.codes_shown = 0
        self.current_code: str | None = None
        self.pair_code: str | None = None
        self.pair_phone_number: str | None = None
        self.sent = 0
        self._timer: TimerHandle | None = None
        self._receipts: dict[tuple[str, str], TimerHandle] = {}
        self._counter = 0
        self._keys: tuple[str, str, str] | None = None
        self._storing: asyncio.Task[None] | None = None  # a link or unlink going to PostgreSQL
        self.fail_next_connect: str | None = None
        self._proxy_told = False

    # ------------------------------------------------------------ randomness

    def _bytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self._counter += 1
            seed = f"{self.engine.seed}:{self.session_id}:{self._counter}".encode()
            out += hashlib.sha256(seed).digest()
        return out[:n]

    def _b64(self, n: int) -> str:
        return base64.b64encode(self._bytes(n)).decode()

    # ------------------------------------------------------------ engine side

    def _schedule(self, delay: float, callback: object) -> None:
        self._cancel_timer()
        self._timer = self.engine.clock.call_later(delay, callback)  # type: ignore[arg-type]

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def connect(self) -> None:
        if self.state != "closed":
            return
        self.state = "opening"
        if self.options.proxy and not self._proxy_told:
            self._proxy_told = True
            log.info("session %s connects through the proxy %s", self.session_id, mask_url(self.options.proxy))
        if self.engine.auth_db is not None:
            try:
                await self.engine.fetch_device(self.session_id, self.auth_path)  # maybe linked elsewhere
            except BaseException:
                self.state = "closed"  # the connect failed: a later one starts afresh
                raise
            if self.state != "opening":
                return  # disconnected meanwhile
        self._schedule(self.engine.connect_latency, self._socket_open)

    def _socket_open(self) -> None:
        self._timer = None
        if self.state != "opening":
            return
        proxy_host = urlsplit(self.options.proxy).hostname if self.options.proxy else None
        if proxy_host and proxy_host.endswith(".invalid"):
            # A name that never resolves (RFC 2606): the proxy cannot be reached. The details
            # quote the address as a dialer's error may, password and all (the manager masks it).
            self.state = "closed"
            self.report(SessionError(
                f"cannot reach the proxy {mask_url(self.options.proxy)}", code="proxy_unreachable",
                details=f"dial {self.options.proxy}: lookup {proxy_host}: no such host",
            ))
            return
        if self.fail_next_connect or self.engine.fail_connects:
            message = self.fail_next_connect or self.engine.fail_connects or "connect failed"
            self.fail_next_connect = None
            self.state = "closed"
            self.report(SessionError(message))
            return
        device = self.engine.load_device(self.auth_path)
        if device is not None:
            self.state = "connected"
            self.report(self._connected(device))
            return
        # A new device: fresh keys for this connection, then the server's list of refs.
        self.state = "pairing"
        self.codes_shown = 0
        self._keys = (self._b64(32), self._b64(32), self._b64(32))
        self._next_code()

    def _next_code(self) -> None:
        self._timer = None
        if self.state != "pairing" or self.pair_code is not None:
            return
        if self.codes_shown >= self.engine.codes_per_attempt:
            # The server closes the pairing window; the manager decides what comes next.
            self.current_code = None
            self.report(PairingWindowClosed())
            return
        assert self._keys is not None
        ref = "2@" + self._b64(45)
        noise, identity, adv = self._keys
        self.current_code = (
            f"https://wa.me/settings/linked_devices#{ref},{noise},{identity},{adv},1"
        )
        self.codes_shown += 1
        ttl = self.engine.qr_first_ttl if self.codes_shown == 1 else self.engine.qr_next_ttl
        self.report(QrCodeIssued(self.current_code))
        self._schedule(ttl, self._next_code)

    async def disconnect(self) -> None:
        self._cancel_timer()
        self._cancel_receipts()
        self.state = "closed"
        self.current_code = None
        self.pair_code = None

    async def logout(self) -> None:
        await self.disconnect()
        await self.engine.remove_auth(self.session_id, self.auth_path)

    async def pair_phone(self, phone_number: str) -> str:
        if self.state != "pairing":
            raise SimulationError("the connection is not waiting for a device to link")
        raw = self._bytes(8)
        self.pair_code = "".join(PAIR_ALPHABET[b % len(PAIR_ALPHABET)] for b in raw)
        self.pair_phone_number = phone_number
        self._cancel_timer()  # no more QR codes once a code for a number is out
        self.current_code = None
        return self.pair_code

    async def send_text(self, to: str, text: str) -> str:
        return await self.send(to, Outgoing("text", text))

    async def send(self, to: str, message: Outgoing) -> str:
        """Send any type: the recipient's phone gets it (``sent_messages`` keeps what it got,
        a file as its size and SHA-256, read here as an upload would read it)."""
        if self.state != "connected":
            raise SimulationError("not connected")
        if self.engine.fail_sends:
            raise SimulationError(self.engine.fail_sends)
        if message.type not in MESSAGE_TYPES:
            raise SimulationError(f"no message type {message.type!r}")
        if (message.media is None) != (message.type in ("text", "location", "contact")):
            raise SimulationError(f"a {message.type} message {'needs' if message.media is None else 'takes no'} media")
        if message.media is not None:
            size, sha256 = await asyncio.to_thread(_size_and_hash, Path(message.media.path))
            if size != message.media.size:
                raise SimulationError(f"the file has {size} bytes, not {message.media.size}")
            if message.type == "voice" and not message.media.mimetype.startswith("audio/ogg"):
                raise SimulationError("a voice note must be ogg/opus")
            self.engine.sent_messages.append((to, message, sha256))
        else:
            self.engine.sent_messages.append((to, message, None))
        self.sent += 1
        message_id = "3EB0" + self._bytes(8).hex().upper()
        delay = self.engine.receipt_delay
        if delay is not None:
            for status, after in (("delivered", delay), ("read", 2 * delay)):
                self._receipts[(message_id, status)] = self.engine.clock.call_later(
                    after, partial(self._receipt, to, message_id, status)
                )
        return message_id

    def _receipt(self, chat: str, message_id: str, status: str) -> None:
        self._receipts.pop((message_id, status), None)
        if self.state != "connected":
            return
        self.report(MessageReceipt(
            chat=chat, message_ids=(message_id,), status="read" if status == "read" else "delivered",
            timestamp=self.engine.clock.now(),
        ))

    def _cancel_receipts(self) -> None:
        for handle in self._receipts.values():
            handle.cancel()
        self._receipts.clear()

    async def close(self) -> None:
        await self.disconnect()

    # ------------------------------------------------------------ the phone

    def scan(self, phone_number: str | None = None, push_name: str | None = None) -> None:
        """The phone scans the code on screen (or types the pairing code)."""
        if self.state != "pairing" or (self.current_code is None and self.pair_code is None):
            raise SimulationError("no QR code or pairing code is up to scan")
        number = phone_number or self.pair_phone_number or self._phone_number()
        name = push_name or PUSH_NAMES[self._bytes(1)[0] % len(PUSH_NAMES)]
        device = Device(jid=f"{number}:{1 + self._bytes(1)[0] % 20}@s.whatsapp.net", phone_number=number, push_name=name)
        self._cancel_timer()
        self.state = "linking"
        self.current_code = None
        self.pair_code = None
        if self.engine.auth_db is None:
            self.engine.save_device(self.auth_path, device)
            self._paired(device)
        else:
            # The link is reported only once its row committed: a node that takes the session
            # over right after must never find it linked without its auth.
            self._store_then(self._save_linked(device))

    async def _save_linked(self, device: Device) -> None:
        try:
            await self.engine.store_device(self.session_id, self.auth_path, device)
        except Exception as exc:
            log.warning("session %s: saving the link failed: %s", self.session_id, exc)
            if self.state == "linking":
                self.state = "closed"
                self.report(SessionError(f"could not save the link: {exc}"))
            return
        if self.state == "linking":
            self._paired(device)

    def _paired(self, device: Device) -> None:
        self.report(PairSuccess(device.jid, device.phone_number, PLATFORM))

        def linked() -> None:
            self._timer = None
            if self.state == "linking":
                self.state = "connected"
                self.report(self._connected(device))

        self._schedule(self.engine.link_latency, linked)

    @staticmethod
    def _connected(device: Device) -> SessionConnected:
        """What WhatsApp tells a linked device about its account: the simulated phone is an
        Android phone with a personal (not business) account."""
        return SessionConnected(device.jid, device.phone_number, device.push_name, platform=PLATFORM)

    def _store_then(self, step: Coroutine[Any, Any, None]) -> None:
        self._storing = asyncio.get_running_loop().create_task(step)

    async def stored(self) -> None:
        """Wait for a link (or unlink) the phone made to reach PostgreSQL (cluster mode)."""
        task = self._storing
        if task is not None:
            await asyncio.shield(task)

    def _phone_number(self) -> str:
        digits = "".join(str(b % 10) for b in self._bytes(7))
        return f"1555{digits}"

    def drop(self, reason: str = "connection_lost") -> None:
        """The network drops the connection."""
        if self.state not in ("connected", "linking"):
            raise SimulationError("not connected")
        self._cancel_timer()
        self._cancel_receipts()
        self.state = "closed"
        self.report(SessionDisconnected(reason))

    def remove_device(self) -> None:
        """The phone logs this device out (Linked devices → Log out)."""
        if self.engine.load_device(self.auth_path) is None:
            raise SimulationError("this session is not linked")
        self._cancel_timer()
        self.state = "closed"
        if self.engine.auth_db is None:
            self.engine.forget_device(self.auth_path)
            self.report(LoggedOut("logged_out"))
        else:
            self._store_then(self._remove_then_report())

    async def _remove_then_report(self) -> None:
        try:
            await self.engine.remove_auth(self.session_id, self.auth_path)
        finally:
            self.report(LoggedOut("logged_out"))

    def fail(self, message: str = "simulated engine failure") -> None:
        self._cancel_timer()
        self.state = "closed"
        self.report(SessionError(message))

    def receive(
        self, chat: str, text: str, *, type: str = "text", media: ReceivedMedia | None = None,
        location: Location | None = None, contact: Contact | None = None,
    ) -> None:
        if self.state != "connected":
            raise SimulationError("not connected")
        self.report(
            IncomingMessage(
                chat=chat, text=text, message_id="3A" + self._bytes(9).hex().upper(),
                timestamp=self.engine.clock.now(), sender=chat, type=type, media=media,
                location=location, contact=contact,
            )
        )

    async def receive_action(self, action: PhoneAction) -> None:
        """The phone sends ``action``'s message. Its file is "downloaded" as a real engine
        would: copied into ``options.media_dir`` when ``download_media`` is on."""
        if self.state != "connected":
            raise SimulationError("not connected")
        chat = action.chat or "14155550100"
        if action.type == "text":
            self.receive(chat, action.text or "Hello from the simulated phone")
            return
        received: ReceivedMedia | None = None
        if action.media is not None:
            source = Path(action.media.path)
            size, sha256 = await asyncio.to_thread(_size_and_hash, source)
            path: str | None = None
            if self.options.download_media and self.options.media_dir:
                target = Path(self.options.media_dir) / ("dl_" + self._bytes(12).hex())
                await asyncio.to_thread(_copy_private, source, target)
                path = str(target)
            received = ReceivedMedia(action.media.mimetype, size, sha256, action.media.filename, path)
        self.receive(chat, action.text or "", type=action.type, media=received,
                     location=action.location, contact=action.contact)


class SimulatedEngine:
    name = "simulated"
    plays_phone = True

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        seed: int | str = 0,
        connect_latency: float = 0.0,
        link_latency: float = 0.0,
        qr_first_ttl: float = 60.0,
        qr_next_ttl: float = 20.0,
        codes_per_attempt: int = 6,
        persist_auth: bool = True,
        receipt_delay: float | None = 2.0,
        database_url: str | None = None,
    ) -> None:
        self.clock: Clock = clock or RealClock()
        self.seed = seed
        self.connect_latency = connect_latency
        self.link_latency = link_latency
        self.qr_first_ttl = qr_first_ttl
        self.qr_next_ttl = qr_next_ttl
        self.codes_per_attempt = codes_per_attempt
        self.persist_auth = persist_auth
        """Keep links in files at ``auth_path`` (else in memory only); moot with a database."""
        self.auth_db = PgAuthStore(database_url, self.name) if database_url else None
        """Cluster mode: links live in PostgreSQL, keyed by session id."""
        self.receipt_delay = receipt_delay
        """Seconds until a sent message is delivered (and as many again until read); None: never."""
        self.fail_connects: str | None = None
        """When set, every connect fails with this message (a network outage)."""
        self.fail_sends: str | None = None
        """When set, every send fails with this message."""
        self.sent_messages: deque[tuple[str, Outgoing, str | None]] = deque(maxlen=1000)
        """What the recipients' phones got (to, message, the file's SHA-256), newest last."""
        self.sessions: dict[str, SimulatedSession] = {}
        self._devices: dict[Path, Device] = {}

    def session(
        self, session_id: str, report: Report, *, auth_path: Path, options: SessionOptions | None = None,
    ) -> SimulatedSession:
        session = SimulatedSession(self, session_id, report, auth_path, options)
        self.sessions[session_id] = session
        return session

    def phone(self, session_id: str) -> SimulatedSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise SimulationError("this session is not running")
        return session

    async def play_phone(self, session_id: str, action: PhoneAction) -> None:
        phone = self.phone(session_id)
        match action.action:
            case "scan":
                phone.scan()
                await phone.stored()
            case "disconnect":
                phone.drop(action.reason or "connection_lost")
            case "logout":
                phone.remove_device()
                await phone.stored()
            case "fail":
                phone.fail(action.reason or "simulated engine failure")
            case "message":
                await phone.receive_action(action)
            case other:
                raise SimulationError(f"the phone cannot {other!r}")

    # The auth "database": a small JSON file, so links survive a restart like neonize's do;
    # in cluster mode a row in PostgreSQL, cached here from connect to logout.
    def load_device(self, auth_path: Path) -> Device | None:
        """The device linked at ``auth_path`` (cluster mode: as fetched at connect)."""
        device = self._devices.get(auth_path)
        if device is None and self.auth_db is None and self.persist_auth and auth_path.exists():
            try:
                device = Device(**json.loads(auth_path.read_text()))
            except (OSError, ValueError, TypeError):
                return None
            self._devices[auth_path] = device
        return device

    def save_device(self, auth_path: Path, device: Device) -> None:
        self._devices[auth_path] = device
        if self.persist_auth:
            auth_path.parent.mkdir(parents=True, exist_ok=True)
            auth_path.write_text(device.dump())

    def forget_device(self, auth_path: Path) -> None:
        self._devices.pop(auth_path, None)
        if self.persist_auth:
            auth_path.unlink(missing_ok=True)

    async def fetch_device(self, session_id: str, auth_path: Path) -> Device | None:
        """Cluster mode: read the session's device from PostgreSQL into the cache."""
        assert self.auth_db is not None
        data = await self.auth_db.load(session_id)
        device = None if data is None else _parse_device(data)
        if device is None:
            self._devices.pop(auth_path, None)
        else:
            self._devices[auth_path] = device
        return device

    async def store_device(self, session_id: str, auth_path: Path, device: Device) -> None:
        """Cluster mode: commit the session's device to PostgreSQL, then cache it."""
        assert self.auth_db is not None
        await self.auth_db.save(session_id, device.dump())
        self._devices[auth_path] = device

    async def has_auth(self, session_id: str, auth_path: Path) -> bool:
        if self.auth_db is not None:
            return await self.fetch_device(session_id, auth_path) is not None
        return self.load_device(auth_path) is not None

    async def remove_auth(self, session_id: str, auth_path: Path) -> None:
        if self.auth_db is not None:
            self._devices.pop(auth_path, None)
            await self.auth_db.delete(session_id)
        else:
            self.forget_device(auth_path)

    def release(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def hosts(self) -> list[EngineHost]:
        """Inline: no host processes."""
        return []

    async def aclose(self) -> None:
        for session in list(self.sessions.values()):
            await session.close()
        self.sessions.clear()
        if self.auth_db is not None:
            await self.auth_db.aclose()


def _size_and_hash(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while piece := f.read(1024 * 1024):
            size += len(piece)
            digest.update(piece)
    return size, digest.hexdigest()


def _copy_private(source: Path, target: Path) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as out, open(source, "rb") as f:
        shutil.copyfileobj(f, out, 1024 * 1024)


def _parse_device(data: str) -> Device | None:
    try:
        return Device(**json.loads(data))
    except (ValueError, TypeError):
        log.warning("an engine_auth row is not a simulated device; ignoring it")
        return None
