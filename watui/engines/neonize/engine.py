"""The neonize engine itself: its settings, the sessions it makes, and their auth state.

:class:`NeonizeEngine` is the engine protocol's ``Engine`` for real WhatsApp. It builds one
:class:`.NeonizeSession` per watui session, answers ``has_auth``/``remove_auth`` through
:mod:`.devices`, and closes what is left at shutdown.
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from watui.engines.base import EngineRefused, PhoneAction, Report, SessionOptions
from watui.engines.neonize.devices import _Devices
from watui.engines.neonize.run import _Options
from watui.engines.neonize.session import NeonizeSession

if TYPE_CHECKING:
    from watui.engines.auth import PgAuthStore
    from watui.models import EngineHost

DEFAULT_CONNECT_TIMEOUT = 30.0
"""Seconds to wait for the first sign of life (a QR code or a resumed link) before failing."""


class NeonizeEngine:
    """The real WhatsApp engine: one neonize client and auth database per session.

    ``connect_timeout``: seconds an attempt may go without a QR code or a resumed link before
    it fails with ``connect_timeout`` and its dial is cut (Go itself waits a minute on a
    silent network). ``start_grace``: upper bound on how long one hold of the process-wide
    start lock lasts when its end cannot be seen (normally an attempt holds it until its dial
    begins: milliseconds; see :mod:`.run`). ``log_level``: whatsmeow's level (DEBUG, INFO,
    WARN, ERROR), logged through the ``whatsmeow.*`` loggers. ``device_name``: shown on the
    phone under linked devices. ``proxy``: ``socks5://``, ``http://`` or ``https://`` proxy URL
    (``user:pass@`` honoured) for the WhatsApp connection of every session that has none of
    its own (``SessionOptions.proxy``); without either, ``HTTPS_PROXY`` applies (see :mod:`.relay`).
    ``database_url``: cluster mode, every session's auth state in that PostgreSQL database
    (see :mod:`watui.engines.neonize.devices`) instead of a file per session.
    """

    name = "neonize"
    plays_phone = False

    def __init__(
        self,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        start_grace: float = 3.0,
        log_level: str = "WARN",
        device_name: str = "watui",
        proxy: str | None = None,
        database_url: str | None = None,
    ) -> None:
        self.devices = _Devices(database_url, self.name)
        """Where each session's whatsmeow device is kept (a file, or the cluster's database)."""
        self.options = _Options(
            connect_timeout=connect_timeout,
            start_grace=start_grace,
            log_level=log_level.upper(),
            device_name=device_name,
            proxy=proxy,
        )
        self._sessions: weakref.WeakSet[NeonizeSession] = weakref.WeakSet()

    @property
    def auth_db(self) -> PgAuthStore | None:
        """Cluster mode: which device is each session's (``engine_auth``)."""
        return self.devices.auth_db

    @property
    def database(self) -> str | None:
        """Cluster mode: the whatsmeow store every session shares."""
        return self.devices.database

    def session(
        self,
        session_id: str,
        report: Report,
        *,
        auth_path: Path,
        options: SessionOptions | None = None,
    ) -> NeonizeSession:
        """One session's engine side. ``options``: its own proxy (over the engine's), and
        whether received media is saved, and where; every attempt of the session uses them."""
        session = NeonizeSession(
            session_id,
            report,
            Path(auth_path),
            options=self.options_for(options),
            devices=self.devices,
            forget=self._forget,
        )
        self._sessions.add(session)
        return session

    def options_for(self, options: SessionOptions | None) -> _Options:
        """The engine's settings with a session's own over them: its proxy (else the
        engine's ``proxy``, else ``HTTPS_PROXY``) and its media settings."""
        if options is None:
            return self.options
        return replace(
            self.options,
            proxy=options.proxy or self.options.proxy,
            download_media=options.download_media,
            media_dir=options.media_dir,
        )

    def _forget(self, session: NeonizeSession) -> None:
        self._sessions.discard(session)

    async def has_auth(self, session_id: str, auth_path: Path) -> bool:
        """True if the session has a linked device: in its own db file (read-only; never
        creates it), or in cluster mode in PostgreSQL."""
        return await self.devices.has_auth(session_id, auth_path)

    async def linked_jid(self, session_id: str) -> str | None:
        """Cluster mode: the JID of the session's device, if whatsmeow's store still has it."""
        return await self.devices.linked_jid(session_id)

    async def remove_auth(self, session_id: str, auth_path: Path) -> None:
        """Delete the session's auth: its db and SQLite side files, or in cluster mode its
        whatsmeow device (the keys, sessions and contacts go with it: ``ON DELETE CASCADE``)."""
        await self.devices.remove_auth(session_id, auth_path)

    async def play_phone(self, session_id: str, action: PhoneAction) -> None:
        """A real phone is played by a person, not by watui."""
        raise EngineRefused("only the simulated engine can play the phone")

    def hosts(self) -> list[EngineHost]:
        """Inline: no host processes."""
        return []

    async def aclose(self) -> None:
        """Close whatever sessions are still open (the manager normally closed them all)."""
        for session in list(self._sessions):
            await session.close()
        await self.devices.aclose()
