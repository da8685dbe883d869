"""Chat messages of every type, both ways: whatsmeow's E2E protos ↔ the engine protocol.

Incoming (:func:`incoming_content`): what a received (whatsmeow-unwrapped) message says, as
``(type, text, media, location, contact)``: ``imageMessage`` → ``image``, ``videoMessage`` →
``video``, ``audioMessage`` → ``audio`` (``voice`` when ``PTT`` is set), ``documentMessage`` →
``document``, ``stickerMessage`` → ``sticker``, ``locationMessage`` → ``location``,
``contactMessage`` → ``contact`` (the phone from the vCard's ``waid=``, else its ``TEL``).
whatsmeow hands the message over unwrapped; the wrappers (ephemeral, view once, a document
with a caption) are still opened here, in case one comes through as it is.

Downloading (:func:`save_media`): the bytes neonize's ``download_any`` returns go to a new
file (mode 0600) under the session's media directory; a failure is reported on the message
(``ReceivedMedia.error``), never instead of it.

Outgoing (:func:`build_outgoing`): two steps, so the message can be checked without a
network. The upload (:func:`upload_media`: neonize's ``upload``, which encrypts the bytes with
the media type's keys and posts them to WhatsApp's media servers) gives an ``UploadResponse``;
:func:`assemble` puts that and the message's own fields into the E2E proto. Neonize's own
``build_*_message`` helpers are not called: they read the duration and thumbnail of audio and
video through an ``ffmpeg`` binary (absent here, and not a watui dependency), re-sniff the
mimetype over the declared one, and turn ``@digits`` and ``…@g.us`` in a caption into
mentions and group look-ups (user text is data: see :func:`.mapping.outgoing_text`). What they
add that matters is kept: the upload with the right media type, an image's JPEG thumbnail and
size (Pillow, which neonize brings), the playing time of an Ogg/opus or MP4 file (read from its
headers: :func:`media_seconds`), ``PTT`` and the opus mimetype for a voice note, and neonize's
vCard (``gen_vcard``) for a contact.

Importing this module does not load the Go library.
"""

from __future__ import annotations

import contextlib
import io
import logging
import mimetypes
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watui.engines.base import Contact, Location, MediaFile, Outgoing, ReceivedMedia

if TYPE_CHECKING:
    from neonize.client import NewClient
    from neonize.proto.Neonize_pb2 import UploadResponse
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as E2EMessage

log = logging.getLogger(__name__)

MEDIA_TYPES = ("image", "video", "audio", "voice", "document", "sticker")
"""The message types that carry a file."""

VOICE_MIMETYPE = "audio/ogg; codecs=opus"
"""What WhatsApp's apps put on a voice note (and play as one)."""

THUMBNAIL_SIDE = 200
"""An image's JPEG thumbnail fits in this many pixels a side (as neonize's builder makes it)."""

# The E2E message fields that carry a file, and the watui type each one is.
_MEDIA_FIELDS = (
    ("imageMessage", "image"),
    ("videoMessage", "video"),
    ("audioMessage", "audio"),
    ("documentMessage", "document"),
    ("stickerMessage", "sticker"),
)
# Wrappers around a message (a FutureProofMessage each: ``.message`` is the inner one).
_WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
)


# --------------------------------------------------------------------------- incoming


def unwrap(msg: Any) -> Any:
    """The message inside ephemeral / view-once / document-with-caption wrappers (if any)."""
    for _ in range(4):  # wrappers nest at most a couple deep (ephemeral → view once → …)
        for field in _WRAPPERS:
            if msg.HasField(field) and getattr(msg, field).HasField("message"):
                msg = getattr(msg, field).message
                break
        else:
            return msg
    return msg


def media_part(msg: Any) -> tuple[str, Any] | None:
    """``(type, sub-message)`` of an (unwrapped) message that carries a file, else None."""
    for field, kind in _MEDIA_FIELDS:
        if msg.HasField(field):
            sub = getattr(msg, field)
            if kind == "audio" and sub.PTT:
                kind = "voice"
            return kind, sub
    return None


def received_media(sub: Any, kind: str) -> ReceivedMedia:
    """What a media sub-message declares about its file (nothing downloaded yet)."""
    filename = (str(sub.fileName) or None) if kind == "document" else None
    return ReceivedMedia(
        mimetype=str(sub.mimetype),
        size=int(sub.fileLength),
        sha256=bytes(sub.fileSHA256).hex(),
        filename=filename,
    )


_WAID = re.compile(r"waid=\+?(\d+)", re.IGNORECASE)
_TEL = re.compile(r"^(?:item\d+\.)?TEL[^:\r\n]*:([^\r\n]+)", re.IGNORECASE | re.MULTILINE)
_FN = re.compile(r"^FN[^:\r\n]*:([^\r\n]+)", re.IGNORECASE | re.MULTILINE)


def vcard_phone(vcard: str) -> str:
    """The phone number a vCard gives, digits only: its ``waid=`` (the WhatsApp account), else
    its first ``TEL`` (``+49 170 1234567`` → ``491701234567``); "" if it has neither."""
    found = _WAID.search(vcard)
    if found is not None:
        return found.group(1)
    tel = _TEL.search(vcard)
    return re.sub(r"\D", "", tel.group(1)) if tel is not None else ""


def incoming_content(
    msg: Any,
) -> tuple[str, str, ReceivedMedia | None, Location | None, Contact | None] | None:
    """``(type, text, media, location, contact)`` of a received E2E message, or None when it
    is none of watui's types (a reaction, a poll, a protocol message…). ``text`` is the body
    of a text message and the caption of a media message ("" if none)."""
    msg = unwrap(msg)
    if msg.conversation:
        return "text", str(msg.conversation), None, None, None
    if msg.HasField("extendedTextMessage"):
        return "text", str(msg.extendedTextMessage.text), None, None, None
    part = media_part(msg)
    if part is not None:
        kind, sub = part
        caption = str(sub.caption) if kind in ("image", "video", "document") else ""
        return kind, caption, received_media(sub, kind), None, None
    if msg.HasField("locationMessage"):
        loc = msg.locationMessage
        location = Location(
            latitude=float(loc.degreesLatitude),
            longitude=float(loc.degreesLongitude),
            name=str(loc.name) or None,
            address=str(loc.address) or None,
        )
        return "location", "", None, location, None
    if msg.HasField("contactMessage"):
        card = msg.contactMessage
        name = str(card.displayName)
        if not name:
            found = _FN.search(card.vcard)
            name = found.group(1).strip() if found is not None else ""
        return "contact", "", None, None, Contact(name=name, phone=vcard_phone(str(card.vcard)))
    return None


def save_media(data: bytes, media_dir: str, *, message_id: str, mimetype: str) -> str:
    """Write downloaded bytes to a new file (0600) under ``media_dir``; returns its path.

    The name is the message id (made safe) with a random tail and the mimetype's extension,
    created exclusively: an existing file is never overwritten.
    """
    folder = Path(media_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", message_id)[:64] or "media"
    ext = mimetypes.guess_extension(mimetype.split(";")[0].strip()) or ".bin"
    path = folder / f"{stem}-{secrets.token_hex(4)}{ext}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return str(path)


# --------------------------------------------------------------------------- outgoing


def upload_kind(kind: str) -> Any:
    """neonize's ``MediaType`` an outgoing message of type ``kind`` is uploaded as: it picks
    the keys the bytes are encrypted with, which the recipient derives from the message's
    type (a sticker uses the image keys, a voice note the audio keys)."""
    from neonize.utils.enum import MediaType

    return {
        "image": MediaType.MediaImage,
        "sticker": MediaType.MediaImage,
        "video": MediaType.MediaVideo,
        "audio": MediaType.MediaAudio,
        "voice": MediaType.MediaAudio,
        "document": MediaType.MediaDocument,
    }[kind]


def image_preview(data: bytes) -> tuple[bytes | None, int, int]:
    """An image's JPEG thumbnail and its size in pixels (``None, 0, 0`` if Pillow cannot read
    it: the message goes without a preview)."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            img.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            out = io.BytesIO()
            (img if img.mode == "RGB" else img.convert("RGB")).save(out, format="jpeg")
            return out.getvalue(), width, height
    except Exception as exc:
        log.debug("no thumbnail for the image: %s", exc)
        return None, 0, 0


def media_seconds(data: bytes) -> int:
    """The playing time of an Ogg (a voice note's opus) or MP4 file, in whole seconds, read
    from its own headers without decoding (0 when it cannot tell: the message goes without a
    duration, as WhatsApp accepts)."""
    try:
        if data.startswith(b"OggS"):
            return _ogg_seconds(data)
        return _mp4_seconds(data)
    except (ValueError, IndexError):
        return 0


def _ogg_seconds(data: bytes) -> int:
    """Ogg: the last page's granule position, in 48 kHz samples for opus (less its pre-skip)."""
    last = data.rfind(b"OggS")
    granule = int.from_bytes(data[last + 6 : last + 14], "little", signed=True)
    head = data.find(b"OpusHead")
    if head < 0 or granule <= 0:
        return 0
    pre_skip = int.from_bytes(data[head + 10 : head + 12], "little")
    return max(0, round((granule - pre_skip) / 48_000))


def _mp4_seconds(data: bytes) -> int:
    """MP4 (ISO BMFF): the movie header's (``moov``/``mvhd``) duration over its timescale."""
    for kind, body, end in _boxes(data, 0, len(data)):
        if kind != b"moov":
            continue
        for inner, at, _ in _boxes(data, body, end):
            if inner != b"mvhd":
                continue
            if data[at] == 1:  # version 1: 64-bit times
                scale = int.from_bytes(data[at + 20 : at + 24], "big")
                length = int.from_bytes(data[at + 24 : at + 32], "big")
            else:
                scale = int.from_bytes(data[at + 12 : at + 16], "big")
                length = int.from_bytes(data[at + 16 : at + 20], "big")
            return round(length / scale) if scale else 0
    return 0


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """The ISO BMFF boxes between ``start`` and ``end``: ``(type, body start, box end)``."""
    at = start
    while at + 8 <= end:
        size = int.from_bytes(data[at : at + 4], "big")
        kind = data[at + 4 : at + 8]
        body = at + 8
        if size == 1:  # a 64-bit size follows the type
            size = int.from_bytes(data[at + 8 : at + 16], "big")
            body = at + 16
        elif size == 0:  # to the end
            size = end - at
        if size < body - at:
            return
        yield kind, body, min(at + size, end)
        at += size


def assemble(
    message: Outgoing,
    upload: UploadResponse | None = None,
    *,
    thumbnail: bytes | None = None,
    width: int = 0,
    height: int = 0,
    seconds: int = 0,
    animated: bool = False,
    sent_at: int | None = None,
) -> E2EMessage:
    """The E2E message for ``message`` (no network): for a media type, ``upload`` is what
    neonize's ``upload`` answered for its bytes. ``thumbnail``/``width``/``height``: an
    image's preview (see :func:`image_preview`). ``seconds``: a video's or audio's playing
    time (:func:`media_seconds`; 0: unknown, left out). ``animated``: a sticker that moves
    (:func:`is_animated_webp`). ``sent_at``: the media key's timestamp (seconds; now if None)."""
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
        AudioMessage,
        ContactMessage,
        DocumentMessage,
        ImageMessage,
        LocationMessage,
        Message,
        StickerMessage,
        VideoMessage,
    )

    kind = message.type
    if kind == "text":
        return Message(conversation=message.text)
    if kind == "location":
        if message.location is None:
            raise ValueError("a location message needs a location")
        loc = message.location
        fields: dict[str, Any] = {"degreesLatitude": loc.latitude, "degreesLongitude": loc.longitude}
        if loc.name:
            fields["name"] = loc.name
        if loc.address:
            fields["address"] = loc.address
        return Message(locationMessage=LocationMessage(**fields))
    if kind == "contact":
        if message.contact is None:
            raise ValueError("a contact message needs a contact")
        card = message.contact
        return Message(contactMessage=ContactMessage(displayName=card.name, vcard=vcard(card)))
    if kind not in MEDIA_TYPES:
        raise ValueError(f"unknown message type {kind!r}")
    media = message.media
    if media is None or upload is None:
        raise ValueError(f"a {kind} message needs its media (and its upload)")
    common: dict[str, Any] = {
        "URL": upload.url,
        "directPath": upload.DirectPath,
        "mediaKey": upload.MediaKey,
        "fileEncSHA256": upload.FileEncSHA256,
        "fileSHA256": upload.FileSHA256,
        "fileLength": upload.FileLength,
        "mimetype": media.mimetype,
        "mediaKeyTimestamp": int(time.time()) if sent_at is None else sent_at,
    }
    caption = {"caption": message.text} if message.text else {}
    duration = {"seconds": seconds} if seconds > 0 else {}
    if kind == "image":
        preview: dict[str, Any] = {}
        if thumbnail:
            preview = {"JPEGThumbnail": thumbnail}
        if width and height:
            preview.update(width=width, height=height)
        return Message(imageMessage=ImageMessage(**common, **caption, **preview))
    if kind == "video":
        return Message(videoMessage=VideoMessage(**common, **caption, **duration))
    if kind in ("audio", "voice"):
        voice = kind == "voice"
        if voice and media.mimetype.split(";")[0].strip() in ("audio/ogg", "audio/opus"):
            common["mimetype"] = VOICE_MIMETYPE
        return Message(audioMessage=AudioMessage(**common, **duration, PTT=voice))
    if kind == "document":
        name = media.filename or f"file{mimetypes.guess_extension(media.mimetype) or ''}"
        return Message(
            documentMessage=DocumentMessage(**common, **caption, fileName=name, title=name)
        )
    # sticker
    return Message(stickerMessage=StickerMessage(**common, isAnimated=animated))


def is_animated_webp(data: bytes) -> bool:
    """A WebP with an animation (its ``VP8X`` header's animation flag)."""
    return (
        data[:4] == b"RIFF" and data[8:12] == b"WEBP" and data[12:16] == b"VP8X"
        and len(data) > 20 and bool(data[20] & 0x02)
    )


def vcard(card: Contact) -> str:
    """The vCard of a shared contact, as neonize writes it (``gen_vcard``: the number
    international-formatted, with the ``waid`` that links it to the WhatsApp account); a number
    phonenumbers cannot parse still gets a plain ``TEL``."""
    digits = re.sub(r"\D", "", card.phone)
    try:
        from neonize.utils import gen_vcard

        return gen_vcard(card.name, digits)
    except Exception:
        return (
            f"BEGIN:VCARD\nVERSION:3.0\nFN:{card.name}\n"
            f"item1.TEL;waid={digits}:+{digits}\nEND:VCARD"
        )


def read_media(media: MediaFile) -> bytes:
    """The bytes of an outgoing file (blocking: call it off the loop)."""
    return Path(media.path).read_bytes()


def upload_media(api: NewClient, kind: str, data: bytes) -> UploadResponse:
    """Encrypt and upload ``data`` through neonize (blocking, on the network)."""
    return api.upload(data, upload_kind(kind))


def build_outgoing(api: NewClient, message: Outgoing) -> E2EMessage:
    """The E2E message to send for ``message``: its file read and uploaded first, for a media
    type (blocking: runs on a neonize call thread)."""
    if message.type not in MEDIA_TYPES:
        return assemble(message)
    if message.media is None:
        raise ValueError(f"a {message.type} message needs its media")
    data = read_media(message.media)
    thumbnail, width, height = image_preview(data) if message.type == "image" else (None, 0, 0)
    seconds = media_seconds(data) if message.type in ("video", "audio", "voice") else 0
    animated = message.type == "sticker" and is_animated_webp(data)
    upload = upload_media(api, message.type, data)
    return assemble(
        message, upload, thumbnail=thumbnail, width=width, height=height, seconds=seconds,
        animated=animated,
    )
