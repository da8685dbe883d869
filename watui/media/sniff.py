"""What a file is, by its first bytes (``filetype``'s magic numbers), and whether that is what
a message of its type may carry.

WhatsApp takes, per type (its Cloud API's list): images JPEG and PNG; stickers WebP; video
MP4 and 3GPP; audio AAC, MP4 audio, MPEG, AMR and Ogg; voice notes Ogg with the Opus codec
(anything else plays as an audio file, not a voice note); documents anything. A declared
``mimetype`` must name the sniffed content (aliases such as ``image/jpg`` count), and a
document whose content is recognised must be declared as what it is (or not declared).
"""

from __future__ import annotations

import filetype

from watui.media.errors import MediaTypeMismatch

HEAD_BYTES = 8192
"""How much of a file sniffing reads (the longest signature ``filetype`` checks)."""

ALLOWED: dict[str, tuple[str, ...]] = {
    "image": ("image/jpeg", "image/png"),
    "sticker": ("image/webp",),
    "video": ("video/mp4", "video/3gpp"),
    "audio": ("audio/aac", "audio/mp4", "audio/mpeg", "audio/amr", "audio/ogg"),
    "voice": ("audio/ogg",),
}
"""The content each media type may carry; ``document`` takes anything."""

ALIASES = {
    "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "audio/mp3": "audio/mpeg",
    "audio/x-m4a": "audio/mp4", "audio/m4a": "audio/mp4", "audio/opus": "audio/ogg",
    "audio/x-aac": "audio/aac", "video/3gp": "video/3gpp", "audio/wav": "audio/x-wav",
    "audio/flac": "audio/x-flac", "application/x-pdf": "application/pdf",
}

GENERIC = frozenset({"application/octet-stream", "binary/octet-stream", ""})
"""Declared types that say nothing (what a client sends for a file it cannot name): as if
none was declared."""

OPUS_MIMETYPE = "audio/ogg; codecs=opus"
"""What a voice note is sent and stored as."""


def normalize(mimetype: str) -> str:
    """``mimetype`` without parameters, lower case, aliases resolved (``image/jpg`` → jpeg)."""
    base = mimetype.split(";", 1)[0].strip().lower()
    return ALIASES.get(base, base)


def sniff(head: bytes) -> str | None:
    """The mimetype of content starting with ``head``, or None when no signature matches."""
    kind = filetype.guess(head)
    return None if kind is None else ALIASES.get(kind.mime, kind.mime)


def is_opus(head: bytes) -> bool:
    """An Ogg stream whose first logical stream is Opus (its first page holds ``OpusHead``)."""
    return head.startswith(b"OggS") and b"OpusHead" in head[:128]


def check_content(kind: str, head: bytes, declared: str | None) -> str:
    """The mimetype to send and store a ``kind`` message's file as, whose first bytes are
    ``head``; :class:`MediaTypeMismatch` when the content is not what ``kind`` or ``declared``
    say."""
    found = sniff(head)
    given = normalize(declared) if declared else None
    if given in GENERIC:
        given = None
    details = {"type": kind, "declared": declared, "detected": found}
    if kind == "voice":
        if not is_opus(head):
            raise MediaTypeMismatch(
                "a voice note must be Ogg audio with the Opus codec (audio/ogg; codecs=opus)",
                details=details,
            )
        if given not in (None, "audio/ogg"):
            raise MediaTypeMismatch(f"the content is audio/ogg (opus), not {declared}", details=details)
        return OPUS_MIMETYPE
    allowed = ALLOWED.get(kind)
    if allowed is not None and found not in allowed:
        what = f"is {found}" if found else "is of no type it recognises"
        raise MediaTypeMismatch(
            f"a {kind} message takes {', '.join(allowed)}; the content {what}", details=details,
        )
    if given is not None and found is not None and given != found:
        raise MediaTypeMismatch(f"the content is {found}, not {declared}", details=details)
    if found is not None:
        return "audio/ogg; codecs=opus" if found == "audio/ogg" and is_opus(head) else found
    return given or "application/octet-stream"


def kind_for(head: bytes) -> str:
    """The message type a file starting with ``head`` goes as when nobody says (the
    console's attach): what it is if a type takes it, else a document."""
    if is_opus(head):
        return "voice"
    found = sniff(head)
    for kind in ("image", "sticker", "video", "audio"):
        if found in ALLOWED[kind]:
            return kind
    return "document"
