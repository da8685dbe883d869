"""What a session's engine is given besides its id and auth path: :class:`SessionOptions`.

Made afresh each time a session gets an engine session (every start, restart, restore or
takeover), so a changed setting applies from the next one on (watui/manager/commands.py
restarts a running session whose proxy changed, so the new proxy applies at once).
"""

from __future__ import annotations

from pathlib import Path

from watui.config import Settings
from watui.engines.base import SessionOptions
from watui.models import Session


def effective_proxy(settings: Settings, session: Session) -> str | None:
    """The proxy this session's connections go through: its own ``settings.proxy``, else
    ``WATUI_PROXY`` (None: direct)."""
    return session.settings.proxy or settings.proxy


def media_dir(settings: Settings, session_id: str) -> Path:
    """Where the engine saves this session's downloaded media: ``<data-dir>/media/<id>``.

    Not created here (most sessions never receive a file): whoever writes the first file
    creates it, private (``mkdir(mode=0o700, parents=True, exist_ok=True)``)."""
    return settings.data_dir / "media" / session_id


def session_options(settings: Settings, session: Session) -> SessionOptions:
    """The engine options of ``session``: its proxy (or ``WATUI_PROXY``), whether to
    download received media (``settings.download_media``, true where the setting is absent)
    and the directory to download it to."""
    download = getattr(session.settings, "download_media", True)
    return SessionOptions(
        proxy=effective_proxy(settings, session),
        download_media=bool(download),
        media_dir=str(media_dir(settings, session.id)),
    )
