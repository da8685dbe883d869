"""Small but real files of each kind the media tests send and receive: each starts with its
format's signature, so content sniffing (``filetype``) recognises it."""

from __future__ import annotations

import base64
import hashlib
import os

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + os.urandom(2000) + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(1500)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + os.urandom(800)
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + os.urandom(4000)
MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x00" + os.urandom(3000)
OPUS = (b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x13OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00"
        + os.urandom(2500))
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + os.urandom(3000) + b"\n%%EOF\n"

SAMPLES: dict[str, tuple[bytes, str]] = {
    "image": (JPEG, "image/jpeg"),
    "video": (MP4, "video/mp4"),
    "audio": (MP3, "audio/mpeg"),
    "voice": (OPUS, "audio/ogg; codecs=opus"),
    "document": (PDF, "application/pdf"),
    "sticker": (WEBP, "image/webp"),
}
"""Per media type: bytes, and the mimetype watui stores them as."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
