"""The engine protocol.

An :class:`Engine` makes one :class:`EngineSession` per watui session. The session reports
what happens on the wire through a ``report`` callable, one :data:`EngineEvent` at a time.
``report`` is safe to call from the event loop thread only; an engine whose library calls
back from other threads (neonize) hops onto the loop with ``call_soon_threadsafe``.

Engines never change session status themselves: they report facts, the manager applies the
state machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from watui.models import EngineHost


@dataclass(frozen=True, slots=True)
class QrCodeIssued:
    """A new QR payload to show. The manager times its expiry (60 s first, then 20 s)."""

    code: str


@dataclass(frozen=True, slots=True)
class PairSuccess:
    """The phone scanned the code (or entered the pairing code); the link is being set up."""

    jid: str
    phone_number: str
    platform: str = ""


@dataclass(frozen=True, slots=True)
class SessionConnected:
    """Connected (linked, or resumed). The account's details, where the engine knows them:
    ``push_name`` (the name the phone shows), ``platform`` (the phone's: ``android``,
    ``iphone``, ``smba``…), ``business_name`` (a WhatsApp Business account's verified name)."""

    jid: str
    phone_number: str
    push_name: str = ""
    platform: str = ""
    business_name: str = ""


@dataclass(frozen=True, slots=True)
class SessionDisconnected:
    """The connection dropped; it may come back with a reconnect."""

    reason: str


@dataclass(frozen=True, slots=True)
class LoggedOut:
    """The phone removed this linked device (or WhatsApp did); the auth data is void."""

    reason: str = "logged_out"


@dataclass(frozen=True, slots=True)
class SessionError:
    """The engine cannot go on: ``message`` is shown to the user as the failure reason.

    ``details``: the engine's own text, when ``message`` says it in other words (Go's dial
    error behind ``cannot reach WhatsApp: the name web.whatsapp.com does not resolve``).
    """

    message: str
    code: str = "engine_error"
    details: str | None = None


@dataclass(frozen=True, slots=True)
class PairingWindowClosed:
    """WhatsApp closed this connection's linking window (whatsmeow's QR channel "timeout").

    The QR codes ran out, or the 160 s a pairing code lives are over: whatever code is on
    screen is dead. The manager starts a new round or gives up (see ``_on_link_round_over``).
    """


MESSAGE_TYPES = ("text", "image", "video", "audio", "voice", "document", "sticker", "location", "contact")
"""The kinds of chat message watui sends and receives (``watui.models.MessageType``)."""


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Contact:
    """A shared contact card: a display name and a phone number (digits, no plus)."""

    name: str
    phone: str


@dataclass(frozen=True, slots=True)
class MediaFile:
    """The bytes of a media message, in a file the caller owns (the engine reads it, never
    deletes it). A path rather than bytes so that large files cross the engine-host pipe as a
    name, not as a frame."""

    path: str
    mimetype: str
    size: int
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A chat message to send. ``text`` is the body of a ``text`` message and the caption of
    an image, video or document (empty: none); ``media`` goes with the media types,
    ``location`` and ``contact`` with theirs. ``voice`` is sent as a WhatsApp voice note (an
    opus audio with ``ptt`` set)."""

    type: str = "text"
    text: str = ""
    media: MediaFile | None = None
    location: Location | None = None
    contact: Contact | None = None


@dataclass(frozen=True, slots=True)
class ReceivedMedia:
    """What a received media message says about its file. ``path``: where the engine saved
    the downloaded bytes (a file under the directory it was given, which the manager moves
    into the store), or None when the bytes were not downloaded (``download_media`` off, or
    the download failed: ``error`` says why)."""

    mimetype: str
    size: int
    sha256: str
    """Hex SHA-256 of the plaintext, as WhatsApp declares it ("" if it did not)."""
    filename: str | None = None
    path: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """Per-session settings an engine applies when it makes a session.

    ``proxy``: ``socks5://[user:pass@]host:port`` or ``http(s)://[user:pass@]host:port``, the
    address every connection of this session goes through (None: the engine's default).
    ``download_media``: save received media's bytes (to ``media_dir``) so they can be served.
    """

    proxy: str | None = None
    download_media: bool = True
    media_dir: str | None = None


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A chat message seen on this account.

    ``chat`` is the normalised chat id: a user's phone digits (``4915112345678``), or a group
    id (``…@g.us``); one conversation has one id whichever way its messages travel.
    ``from_me``: typed on the phone (or another linked device), so it is outgoing.
    """

    chat: str
    text: str
    message_id: str
    timestamp: datetime
    sender: str = ""
    from_me: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    type: str = "text"
    """One of :data:`MESSAGE_TYPES`; for a media type ``text`` is the caption ("" if none)."""
    media: ReceivedMedia | None = None
    location: Location | None = None
    contact: Contact | None = None


class EngineRefused(RuntimeError):
    """The engine cannot do that now (not connected, no code up to scan); ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class PhoneAction:
    """Something the phone (or WhatsApp) does to a session, for engines that can play it.

    ``action`` is one of ``scan``, ``disconnect``, ``logout``, ``fail``, ``message``; ``reason``
    goes with disconnect/fail, ``chat`` and ``text`` with message. A message of another
    ``type`` than text carries ``media`` (a file the caller owns: the engine copies it, as a
    download would), ``location`` or ``contact``; ``text`` is then its caption.
    """

    action: str
    reason: str | None = None
    chat: str | None = None
    text: str | None = None
    type: str = "text"
    media: MediaFile | None = None
    location: Location | None = None
    contact: Contact | None = None


@dataclass(frozen=True, slots=True)
class MessageReceipt:
    """The recipient's phone received (``delivered``) or showed (``read``) messages we sent."""

    chat: str
    message_ids: tuple[str, ...]
    status: Literal["delivered", "read"]
    timestamp: datetime | None = None


EngineEvent = (
    QrCodeIssued
    | PairSuccess
    | SessionConnected
    | SessionDisconnected
    | LoggedOut
    | SessionError
    | PairingWindowClosed
    | IncomingMessage
    | MessageReceipt
)
Report = Callable[[EngineEvent], None]


class EngineSession(Protocol):
    """One WhatsApp linked device."""

    async def connect(self) -> None:
        """Open the connection. Returns once the attempt is under way; outcomes are reported.

        A session with stored auth resumes (``SessionConnected``); one without starts pairing
        (``QrCodeIssued`` events).
        """

    async def disconnect(self) -> None:
        """Close the connection, keeping the auth data. Idempotent."""

    async def logout(self) -> None:
        """Unlink this device from the phone and clear the auth data. Idempotent."""

    async def pair_phone(self, phone_number: str) -> str:
        """Ask for an 8-character pairing code for ``phone_number`` (digits, no plus)."""

    async def send_text(self, to: str, text: str) -> str:
        """Send ``text`` to the phone number ``to``; return the message id.

        Delivery and read receipts for it arrive later as :class:`MessageReceipt` facts.
        """

    async def send(self, to: str, message: Outgoing) -> str:
        """Send a message of any type to the phone number ``to``; return the message id.
        (``send_text(to, text)`` is ``send(to, Outgoing("text", text))``.)"""

    async def close(self) -> None:
        """Release everything this session holds (threads, handles). Idempotent."""


class Engine(Protocol):
    name: str
    plays_phone: bool
    """True when :meth:`play_phone` works (the simulated engine, inline or hosted)."""

    def session(
        self, session_id: str, report: Report, *, auth_path: Path, options: SessionOptions | None = None,
    ) -> EngineSession:
        """Make the engine side of one session. ``auth_path`` is its own auth database file;
        an engine built with a ``database_url`` (cluster mode) keeps the session's auth state
        in PostgreSQL instead, keyed by ``session_id`` (see :mod:`watui.engines.auth`).
        ``options``: the session's proxy and media settings (None: the defaults)."""

    async def has_auth(self, session_id: str, auth_path: Path) -> bool:
        """True if this session has stored credentials it can resume with.

        A coroutine because the auth state may be in PostgreSQL (cluster mode)."""

    async def remove_auth(self, session_id: str, auth_path: Path) -> None:
        """Delete the session's auth data (after a logout or a delete)."""

    async def play_phone(self, session_id: str, action: PhoneAction) -> None:
        """Play the phone for a running session; raises :class:`EngineRefused` when it cannot."""

    def hosts(self) -> list[EngineHost]:
        """The engine host processes this engine runs (``[]`` for an inline engine)."""

    async def aclose(self) -> None:
        """Shut the engine down; every session was closed before."""
