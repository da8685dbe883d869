"""neonize's protobuf events → the engine protocol's facts (pure functions, no Go calls).

And the few values going the other way: a JID to resume (:func:`_jid_proto`) and the message
``send_text`` sends (:func:`outgoing_text`).

Chat identity. whatsmeow addresses a conversation in several ways: a phone number
(``4915112345678@s.whatsapp.net``, with ``:device`` for one of its devices), a LID
(``123456789012345@lid``, WhatsApp's privacy-preserving id), a group (``…@g.us``), or
``status@broadcast`` for status updates. watui keeps **one chat id per conversation**, the same
for messages in both directions:

* a user: the phone number's digits (what ``send_text`` takes and outgoing messages store);
* a LID: resolved to the phone number through ``SenderAlt`` (incoming) or ``RecipientAlt``
  (sent from the phone) when WhatsApp includes it; otherwise kept as ``…@lid``;
* a group: its group id ``…@g.us``; the participant who wrote goes to ``sender``;
* ``status@broadcast``: not a chat; status updates are not stored as messages.

Importing this module does not load the Go library; only ``neonize.proto`` (pure protobuf).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

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
from watui.engines.neonize.media import incoming_content

if TYPE_CHECKING:
    from google.protobuf.message import Message as ProtoMessage
    from neonize.proto.Neonize_pb2 import JID, Device, MessageSource, PairStatus
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as E2EMessage

log = logging.getLogger(__name__)

USER_SERVERS = frozenset({"s.whatsapp.net", "c.us"})
"""Servers whose JID user part is a phone number."""
LID_SERVER = "lid"
STATUS_BROADCAST = "status@broadcast"

# Statuses that end whatsmeow's QR channel with an error. "success" is followed by
# PairSuccess/Connected events; "timeout" is PairingWindowClosed (see map_login_status).
_LOGIN_STATUS_ERRORS = {
    "error": ("pair_error", "pairing failed"),
    "err-client-outdated": ("client_outdated", "WhatsApp rejected this client version as outdated"),
    "err-scanned-without-multidevice": (
        "multidevice_disabled",
        "the QR code was scanned by a phone without multi-device support",
    ),
    "err-unexpected-state": ("unexpected_state", "unexpected connection state while pairing"),
}
PASSKEY_MESSAGE = (
    "WhatsApp asks for a passkey (WebAuthn) check in a browser to link this account; "
    "watui cannot take part in that check, so this account cannot be linked here"
)


# --------------------------------------------------------------------------- JIDs


def jid_str(jid: JID) -> str:
    """Render a neonize JID like whatsmeow does (``user[:device]@server``)."""
    if jid.RawAgent > 0:
        return f"{jid.User}.{jid.RawAgent}:{jid.Device}@{jid.Server}"
    if jid.Device > 0:
        return f"{jid.User}:{jid.Device}@{jid.Server}"
    if jid.User:
        return f"{jid.User}@{jid.Server}"
    return jid.Server


def _jid_proto(jid: str) -> JID:
    """Parse whatsmeow's ``user[.agent][:device]@server`` into neonize's JID message."""
    from neonize.proto.Neonize_pb2 import JID

    user, _, server = jid.rpartition("@")
    device = 0
    if ":" in user:
        user, _, dev = user.partition(":")
        device = int(dev)
    agent = 0
    if "." in user:
        user, _, raw = user.partition(".")
        agent = int(raw)
    return JID(User=user, RawAgent=agent, Device=device, Integrator=0, Server=server, IsEmpty=False)


def chat_id(jid: JID) -> str:
    """One id per conversation: a user's digits, else ``user@server`` without the device."""
    if jid.Server in USER_SERVERS and jid.User:
        return str(jid.User)
    if jid.User:
        return f"{jid.User}@{jid.Server}"
    return str(jid.Server)


def _phone_of(jid: JID) -> str | None:
    """The digits of a phone-number JID (an alt field), or None if it is not one."""
    if jid.Server in USER_SERVERS and jid.User:
        return str(jid.User)
    return None


def _resolve(jid: JID, alt: JID) -> str:
    """``jid`` as a chat id, a LID replaced by its phone number when ``alt`` carries it."""
    if jid.Server == LID_SERVER:
        phone = _phone_of(alt)
        if phone is not None:
            return phone
    return chat_id(jid)


def message_chat(source: MessageSource) -> str:
    """The normalised chat id of a message or receipt (see the module docstring)."""
    chat = source.Chat
    if chat.Server == LID_SERVER:
        # In a 1:1 LID chat the other side's phone number is SenderAlt on what they send and
        # RecipientAlt on what we sent from the phone.
        return _resolve(chat, source.RecipientAlt if source.IsFromMe else source.SenderAlt)
    return chat_id(chat)


def message_sender(source: MessageSource) -> str:
    """Who wrote it, normalised the same way (a group participant, or the chat itself)."""
    return _resolve(source.Sender, source.SenderAlt)


# --------------------------------------------------------------------------- fields


def message_text(msg: Any) -> str:
    """The human text of an E2E message: a text's body, a media message's caption ("" if
    none, or for a type without text)."""
    content = incoming_content(msg)
    return content[1] if content is not None else ""


def timestamp(value: int) -> datetime:
    """Neonize sends message times in milliseconds (older builds: seconds); accept both."""
    seconds = value / 1000 if value > 100_000_000_000 else value
    return datetime.fromtimestamp(seconds, UTC)


def enum_name(message: ProtoMessage, field: str) -> str:
    """The symbolic name of an enum field (``TEMP_BANNED``), or its number if unknown."""
    value = getattr(message, field)
    enum = message.DESCRIPTOR.fields_by_name[field].enum_type
    found = enum.values_by_number.get(value) if enum is not None else None
    return found.name if found is not None else str(value)


def outgoing_text(text: str) -> E2EMessage:
    """The message ``send_text`` sends: a plain conversation message, exactly ``text``.

    neonize's ``send_message(str)`` would parse ``@digits`` into mentions and look groups up
    for ``@g.us``-like words; user text is data, so it is never interpreted.
    """
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message

    return Message(conversation=text)


# --------------------------------------------------------------------------- events


def map_event(
    event: ProtoMessage, me: Device | None = None, paired: PairStatus | None = None
) -> EngineEvent | None:
    """Translate one neonize event into the engine protocol (``None``: not a session fact).

    ``me`` is the device neonize announced for this client (its event 0): ``Connected`` itself
    carries no identity. ``paired``: the ``PairStatus`` of a link made in this attempt, whose
    platform and business name stand in for the device's while its store has none yet.
    Mapping choices:

    * ``StreamReplaced`` (another client connected with the same keys) is a disconnect with
      reason ``stream_replaced``, not a logout: the credentials are still valid. The manager
      should not blindly reconnect on it, or the two clients keep kicking each other out.
    * ``KeepAliveTimeout`` / ``KeepAliveRestored`` are not facts: whatsmeow keeps pinging for
      up to 3 minutes and, if it gives up, drops the socket, which arrives as ``Disconnected``.
      Reconnecting on the first missed ping would only churn (and leak: see :mod:`.run`).
    * ``TemporaryBan`` and ``ConnectFailure`` are errors; ``ClientOutdated`` too.
    * ``Receipt``: delivered / read (played counts as read) receipts from the other side for
      messages we sent; our own devices' receipts (``IsFromMe``, ``read-self``) are not.
    """
    from neonize.proto import Neonize_pb2 as pb

    if isinstance(event, pb.Message):
        return _map_message(event)
    if isinstance(event, pb.Receipt):
        return _map_receipt(event)
    if isinstance(event, pb.QR):
        return QrCodeIssued(code=event.Codes[0]) if event.Codes else None
    if isinstance(event, pb.PairStatus):
        if event.Status == pb.PairStatus.ERROR or event.Error:
            return SessionError(
                message=f"pairing failed: {event.Error or 'unknown error'}", code="pair_error"
            )
        return PairSuccess(
            jid=jid_str(event.ID), phone_number=event.ID.User, platform=event.Platform
        )
    if isinstance(event, pb.Connected):
        return _connected(me, paired)
    if isinstance(event, pb.Disconnected):
        return SessionDisconnected(reason="connection_lost")
    if isinstance(event, pb.LoggedOut):
        return LoggedOut(reason="logged_out")
    if isinstance(event, pb.StreamReplaced):
        return SessionDisconnected(reason="stream_replaced")
    if isinstance(event, pb.KeepAliveTimeout):
        log.info("keep-alive missed (%d in a row); whatsmeow keeps trying", event.ErrorCount)
        return None
    if isinstance(event, pb.TemporaryBan):
        return SessionError(
            message=(
                f"temporarily banned by WhatsApp ({enum_name(event, 'Code')}), "
                f"expires in {event.Expire} s"
            ),
            code="temporary_ban",
        )
    if isinstance(event, pb.ConnectFailure):
        detail = f": {event.Message}" if event.Message else ""
        return SessionError(
            message=f"WhatsApp refused the connection ({enum_name(event, 'Reason')}){detail}",
            code="connect_failure",
        )
    if isinstance(event, pb.ClientOutdated):
        return SessionError(
            message="WhatsApp rejected this client version as outdated", code="client_outdated"
        )
    return None


def _connected(me: Device | None, paired: PairStatus | None) -> SessionConnected:
    """The account's details on ``Connected``: the JID and push name of our device (event 0),
    the phone's platform (``android``, ``iphone``, ``smba``…) and a business account's
    verified name, from the device store or else from this attempt's pairing."""
    platform = me.Platform if me is not None else ""
    business = me.BussinessName if me is not None else ""  # sic: neonize's field name
    if paired is not None:
        platform = platform or paired.Platform
        business = business or paired.BusinessName
    push_name = me.PushName if me is not None else ""
    if me is None or not me.HasField("JID") or not me.JID.User:
        return SessionConnected(
            jid="", phone_number="", push_name=push_name, platform=platform, business_name=business
        )
    return SessionConnected(
        jid=jid_str(me.JID),
        phone_number=me.JID.User,
        push_name=push_name,
        platform=platform,
        business_name=business,
    )


def _map_message(event: Any) -> IncomingMessage | None:
    """A chat message of one of watui's types (see :mod:`.media`); its media is described,
    not downloaded (the run does that: :meth:`.run._Run.download`)."""
    info = event.Info
    source = info.MessageSource
    if chat_id(source.Chat) == STATUS_BROADCAST:
        return None  # a status update, not a conversation
    content = incoming_content(event.Message)
    if content is None:
        return None
    kind, text, media, location, contact = content
    if kind == "text" and not text:
        return None
    extra = {"push_name": info.Pushname} if info.Pushname else {}
    return IncomingMessage(
        chat=message_chat(source),
        text=text,
        message_id=info.ID,
        timestamp=timestamp(info.Timestamp),
        sender=message_sender(source),
        from_me=source.IsFromMe,
        extra=extra,
        type=kind,
        media=media,
        location=location,
        contact=contact,
    )


def _map_receipt(event: Any) -> MessageReceipt | None:
    from neonize.proto import Neonize_pb2 as pb

    status = {
        pb.Receipt.DELIVERED: "delivered",
        pb.Receipt.READ: "read",
        pb.Receipt.PLAYED: "read",
    }.get(event.Type)
    source = event.MessageSource
    if status is None or source.IsFromMe or not event.MessageIDs:
        return None
    if chat_id(source.Chat) == STATUS_BROADCAST:
        return None
    return MessageReceipt(
        chat=message_chat(source),
        message_ids=tuple(event.MessageIDs),
        status="read" if status == "read" else "delivered",
        timestamp=timestamp(event.Timestamp) if event.Timestamp else None,
    )


def map_login_status(status: str) -> EngineEvent | None:
    """Translate a QR-channel status from neonize's login callback.

    ``timeout``: WhatsApp closed the linking window (codes ran out, or the socket dropped
    before a link), so the code on screen is dead: :class:`PairingWindowClosed`.
    ``passkey-*``: WhatsApp wants a WebAuthn passkey ceremony for this account, which only a
    browser on web.whatsapp.com can perform: a clear ``passkey_required`` error.
    ``success`` is followed by PairSuccess/Connected events, so it maps to nothing.
    """
    if status == "timeout":
        return PairingWindowClosed()
    if status.startswith("passkey"):
        return SessionError(message=PASSKEY_MESSAGE, code="passkey_required")
    found = _LOGIN_STATUS_ERRORS.get(status)
    if found is None:
        if status != "success":
            log.warning("unknown login status from whatsmeow: %r", status)
        return None
    code, message = found
    return SessionError(message=message, code=code)


# --------------------------------------------------------------------------- dial errors

CANNOT_REACH = "cannot reach WhatsApp"
"""How every message about a connection that never got through begins."""

# Go's dial errors (whatsmeow, net/http, x/net/proxy) in words, first match wins. The texts
# end like: ``… Get "https://web.whatsapp.com/ws/chat": dial tcp: lookup web.whatsapp.com on
# 10.0.0.53:53: no such host`` or ``…: proxyconnect tcp: dial tcp 127.0.0.1:9: connect:
# connection refused`` or ``…: socks connect tcp 127.0.0.1:9->web.whatsapp.com:443: …``.
_PROXY = r"(?:proxyconnect tcp: dial tcp|socks connect tcp)"
_DIAL_ERRORS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), words)
    for pattern, words in (
        (r"proxyconnect tcp: dial tcp: lookup (?P<host>[^\s:]+)(?: on \S+)?: no such host",
         "the proxy's name {host} does not resolve"),
        (r"lookup (?P<host>[^\s:]+)(?: on \S+)?: no such host", "the name {host} does not resolve"),
        (r"lookup (?P<host>[^\s:]+)(?: on \S+)?: (?:server misbehaving|i/o timeout|.*temporary)",
         "the name {host} could not be looked up (no answer from DNS)"),
        (_PROXY + r" (?P<addr>[^\s>-]+:\d+)\S*: .*connection refused",
         "connection refused by the proxy at {addr}"),
        (r"dial tcp (?P<addr>\S+): connect: connection refused", "connection refused by {addr}"),
        (r"Proxy Authentication Required", "{proxy} asks for credentials (407 Proxy Authentication Required)"),
        (r"username/password authentication failed", "{proxy} refused the username or password"),
        (r"socks connect tcp \S+: (?:unknown error )?(?P<why>[a-zA-Z][^:]*)$",
         "{proxy} would not connect to WhatsApp ({why})"),
        (r"network is unreachable|no route to host", "no network route to WhatsApp"),
        (_PROXY + r".*(?:i/o timeout|deadline exceeded)", "connection timed out through the proxy"),
        (r"i/o timeout|deadline exceeded|Client\.Timeout", "connection timed out"),
        (r"failed to send handshake request: Get \"[^\"]+\": (?P<status>[A-Z][A-Za-z -]+)$",
         "{proxy} refused the tunnel ({status})"),
        (_PROXY + r".*(?:EOF|connection reset by peer)", "the proxy closed the connection before WhatsApp answered"),
        (r"EOF|connection reset by peer", "the connection closed before WhatsApp answered"),
        (r"x509: |tls: ", "the secure connection to WhatsApp failed (is something intercepting TLS?)"),
        (r"failed to dial whatsapp web websocket", "the connection to WhatsApp failed"),
    )
)


def dial_error_words(raw: str, proxy: str | None = None) -> str | None:
    """Go's text of a failed dial in words (``the name web.whatsapp.com does not resolve``),
    or None if ``raw`` is not a dial error this knows (a database error, say). ``proxy``: the
    proxy in words (``the proxy at host:port``) where Go's text names only the relay."""
    for pattern, words in _DIAL_ERRORS:
        found = pattern.search(raw)
        if found is not None:
            return words.format(proxy=proxy or "the proxy", **found.groupdict())
    return None


def connect_error(
    raw: str, *, seen: str | None = None, seen_raw: str | None = None, proxy: str | None = None
) -> SessionError:
    """The fact for an attempt whose ``Neonize()`` call returned the error ``raw``.

    ``seen``/``seen_raw``: what the attempt's relay saw (:mod:`.relay`), which says it more
    exactly than Go can (Go only sees the relay). ``proxy``: the session's proxy in words
    (its address, never its credentials). The message says what happened in words;
    ``details`` keeps the engine's own text (and the relay's).
    """
    words = seen or dial_error_words(raw, proxy)
    if words is None:
        return SessionError(message=raw, code="connect_failed")
    details = f"{raw} (relay: {seen_raw})" if seen_raw else raw
    return SessionError(message=f"{CANNOT_REACH}: {words}", code="connect_failed", details=details)


def ends_connection(event: EngineEvent) -> bool:
    """Facts after which this attempt is over and its Go client should be stopped."""
    return isinstance(event, SessionDisconnected | LoggedOut | SessionError)
