"""One watui session on neonize: a series of connection attempts on one whatsmeow device.

:class:`NeonizeSession` is what the manager holds (the engine protocol's ``EngineSession``).
It starts and drops attempts (:class:`.run._Run`, where the events come in), and hands the
requests made of a connected client to :mod:`.client`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from watui.engines.base import Outgoing, Report
from watui.engines.neonize.client import (
    log_out,
    request_pair_code,
    send_message,
    send_text_message,
)
from watui.engines.neonize.devices import _Devices
from watui.engines.neonize.go import _go, _in_thread
from watui.engines.neonize.run import NeonizeEngineError, _Options, _Run


class NeonizeSession:
    """The engine side of one watui session: a series of ``_Run`` attempts on one auth db."""

    def __init__(
        self,
        session_id: str,
        report: Report,
        auth_path: Path,
        *,
        options: _Options,
        devices: _Devices,
        forget: Callable[[NeonizeSession], None],
    ) -> None:
        self.session_id = session_id
        self.report = report
        self.auth_path = auth_path
        self.options = options
        self.devices = devices
        self._forget = forget  # tells the engine this session is closed
        self._run: _Run | None = None
        self._closed = False

    @property
    def database(self) -> str:
        """What ``Neonize()`` opens: the cluster's PostgreSQL URL, or this session's file."""
        return self.devices.database_for(self.auth_path)

    @property
    def remember_jid(self) -> Callable[[str, asyncio.AbstractEventLoop], None] | None:
        """Cluster mode: how a run (on its Go thread) records the JID its phone linked."""
        return self.devices.remember_jid(self.session_id)

    async def connect(self) -> None:
        """Start an attempt (resume if the db holds a device, else a new QR link) and return."""
        if self._closed:
            raise NeonizeEngineError("this engine session is closed")
        await self.disconnect()
        await _in_thread(_go)  # the first import loads the Go runtime: keep it off the loop
        loop = asyncio.get_running_loop()
        jid = None
        if self.devices.auth_db is not None:
            jid = await self.devices.linked_jid(self.session_id)
            new_device = jid is None
        else:
            self.auth_path.parent.mkdir(parents=True, exist_ok=True)
            new_device = not await self.devices.has_auth(self.session_id, self.auth_path)
        if self._closed:
            return
        run = _Run(self, loop, new_device=new_device, options=self.options, jid=jid)
        self._run = run
        run.start()  # the run arms its watchdog once it is past the start gate

    async def disconnect(self) -> None:
        """Drop the current attempt; returns within ~2 s whatever the Go side is doing."""
        run, self._run = self._run, None
        if run is None:
            return
        run.close()
        if await _in_thread(run.reap):
            # Stop() cancels neonize's event loop, and a cut relay fails a dial, so the call
            # returns promptly: wait for it, so that a disconnect leaves no thread behind.
            await _in_thread(lambda: run.wait_finished(2.0))

    async def logout(self) -> None:
        """Unlink from the phone when connected, then drop the link and delete the auth db."""
        await log_out(self._run, self.session_id)
        await self.disconnect()
        await self.devices.remove_auth(self.session_id, self.auth_path)

    async def pair_phone(self, phone_number: str) -> str:
        """Ask WhatsApp for an 8-character linking code (needs the QR phase to have begun)."""
        return await request_pair_code(self._run, phone_number, self.options.connect_timeout)

    async def send_text(self, to: str, text: str) -> str:
        """Send ``text`` to the phone number ``to``; returns WhatsApp's message id."""
        return await send_text_message(self._run, to, text)

    async def send(self, to: str, message: Outgoing) -> str:
        """Send a message of any type (a media file is uploaded first); returns its id."""
        return await send_message(self._run, to, message)

    async def close(self) -> None:
        """Drop the connection and refuse further use. Idempotent."""
        self._closed = True
        await self.disconnect()
        self._forget(self)
