"""How large a file each message type may carry: WhatsApp's caps, configurable
(``WATUI_MEDIA_MAX_<TYPE>_BYTES``, :class:`watui.config.Settings`)."""

from __future__ import annotations

from watui.config import Settings
from watui.media.errors import MediaTooLarge


def max_bytes(settings: Settings, kind: str) -> int:
    """The most bytes a ``kind`` message's file may have (voice notes count as audio)."""
    return {
        "image": settings.media_max_image_bytes,
        "video": settings.media_max_video_bytes,
        "audio": settings.media_max_audio_bytes,
        "voice": settings.media_max_audio_bytes,
        "document": settings.media_max_document_bytes,
        "sticker": settings.media_max_sticker_bytes,
    }[kind]


def largest(settings: Settings) -> int:
    """The largest cap of any type: what a download or fetch reads at most."""
    return max(max_bytes(settings, kind) for kind in ("image", "video", "audio", "document", "sticker"))


def check_size(settings: Settings, kind: str, size: int) -> None:
    cap = max_bytes(settings, kind)
    if size > cap:
        raise MediaTooLarge(
            f"a {kind} file may have at most {cap} bytes; this one has {size}",
            details={"type": kind, "size": size, "max_bytes": cap},
        )
