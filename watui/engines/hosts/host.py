"""The engine host process: runs engine sessions for watui and reports their facts over a pipe.

Started by :mod:`watui.engines.hosts.supervisor` as ``python -m watui.engines.hosts`` with the
engine spec in ``WATUI_ENGINE_HOST_SPEC`` (in cluster mode it carries the database URL, which
must not show in ``ps``). It builds the inline engine the spec names (neonize or simulated) and serves calls from watui
(:mod:`watui.engines.hosts.wire`) until its stdin closes, then exits at once.

The protocol runs on copies of file descriptors 0 and 1, taken before anything else loads;
descriptor 1 is then pointed at descriptor 2, so whatever the Go runtime or a library prints
lands in stderr, which watui copies into its own log. Nothing printed can corrupt a frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from functools import partial
from pathlib import Path
from typing import Any

from watui.engines.base import EngineEvent, EngineRefused, EngineSession
from watui.engines.hosts.wire import (
    SPEC_ENV,
    decode_action,
    decode_options,
    decode_outgoing,
    encode_event,
    frame,
    read_frame,
)
from watui.engines.spec import EngineSpec, build_inline

log = logging.getLogger("watui.engines.hosts.host")

SHUTDOWN_GRACE = 3.0
"""Seconds the host gives its sessions to close once watui has gone, before it just exits."""


class Host:
    """One engine and the sessions watui opened in it, keyed by session id."""

    def __init__(self, spec: EngineSpec, fd_in: int, fd_out: int) -> None:
        self.engine = build_inline(spec)
        self.sessions: dict[str, EngineSession] = {}
        self._fd_in = fd_in
        self._fd_out = fd_out
        self._out: asyncio.WriteTransport | None = None
        self._outbox: list[bytes] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**20)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(self._fd_in, "rb", 0)
        )
        self._out, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(self._fd_out, "wb", 0))
        try:
            while (message := await read_frame(reader)) is not None:
                if message.get("t") == "call":
                    self._dispatch(message)
        finally:
            await self._shutdown()

    def _send(self, message: dict[str, Any]) -> None:
        """Queue a frame; everything queued in one turn of the loop goes out in one write."""
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append(frame(message))

    def _flush(self) -> None:
        data, self._outbox = b"".join(self._outbox), []
        if self._out is not None and not self._out.is_closing():
            self._out.write(data)

    def _emit(self, session_id: str, event: EngineEvent) -> None:
        self._send({"t": "event", "sid": session_id, **encode_event(event)})

    def _dispatch(self, message: dict[str, Any]) -> None:
        """Calls run concurrently, as they would inline; ``open`` is synchronous, so it is
        done before any call that follows it in the pipe starts, and ``close`` takes its
        session out at once, so an ``open`` for the same id right behind it (a restart whose
        predecessor is torn down in the background) is not the one closed."""
        call_id, op = message.get("id"), message.get("op")
        session_id = str(message.get("sid") or "")
        args: dict[str, Any] = message.get("args") or {}
        if op == "open":
            self.sessions[session_id] = self.engine.session(
                session_id, partial(self._emit, session_id), auth_path=Path(args["auth_path"]),
                options=decode_options(args.get("options")),
            )
            self._send({"t": "reply", "id": call_id, "ok": True, "value": None})
            return
        if op == "crash":
            crash(str(args.get("how", "abort")))
        closing = self.sessions.pop(session_id, None) if op == "close" else None
        task = asyncio.get_running_loop().create_task(self._call(call_id, str(op), session_id, args, closing))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(
        self, call_id: Any, op: str, session_id: str, args: dict[str, Any], closing: EngineSession | None
    ) -> None:
        try:
            value = await self._run(op, session_id, args, closing)
        except EngineRefused as exc:
            self._send({"t": "reply", "id": call_id, "ok": False, "refused": True, "error": str(exc)})
        except Exception as exc:
            self._send({"t": "reply", "id": call_id, "ok": False, "refused": False,
                        "error": str(exc) or type(exc).__name__})
        else:
            self._send({"t": "reply", "id": call_id, "ok": True, "value": value})

    async def _run(
        self, op: str, session_id: str, args: dict[str, Any], closing: EngineSession | None
    ) -> Any:
        if op == "forget":
            await self.engine.remove_auth(session_id, Path(args["auth_path"]))
            return None
        if op == "play_phone":
            await self.engine.play_phone(session_id, decode_action(args))
            return None
        session = closing if op == "close" else self.sessions.get(session_id)
        if session is None:
            raise EngineRefused(f"session {session_id} is not open in this engine host")
        match op:
            case "connect":
                await session.connect()
            case "disconnect":
                await session.disconnect()
            case "logout":
                await session.logout()
            case "pair_phone":
                return await session.pair_phone(str(args["phone_number"]))
            case "send_text":
                return await session.send_text(str(args["to"]), str(args["text"]))
            case "send":
                return await session.send(str(args["to"]), decode_outgoing(args["message"]))
            case "close":
                await session.close()
                release = getattr(self.engine, "release", None)  # the simulated engine's registry
                if release is not None and session_id not in self.sessions:  # no successor opened
                    release(session_id)
            case _:
                raise EngineRefused(f"unknown call {op!r}")
        return None

    async def _shutdown(self) -> None:
        """watui closed the pipe (it stops this host, or it is gone): close what is open."""
        sessions = list(self.sessions.values())
        self.sessions.clear()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(s.close() for s in sessions), return_exceptions=True), SHUTDOWN_GRACE
            )
        with contextlib.suppress(Exception):  # e.g. its PostgreSQL pool (cluster mode)
            await asyncio.wait_for(self.engine.aclose(), SHUTDOWN_GRACE)


def crash(how: str) -> None:
    """End this process the hard way (tests and the benchmark prove watui survives it).

    ``go``: a nil-pointer panic inside the Go runtime (neonize asked for a client it does
    not have: the same fault that ends a process when a stopped client is used); ``abort``:
    SIGABRT; anything else: SIGKILL to itself.
    """
    log.warning("crashing on purpose (%s)", how)
    if how == "go":
        from neonize._binder import gocode

        gocode.GetMe(b"watui-no-such-client")
    if how == "abort":
        os.abort()
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    spec = os.environ.pop(SPEC_ENV, None)
    if len(argv) != 1 or spec is None:
        sys.exit(f"usage: {SPEC_ENV}=ENGINE_SPEC_JSON python -m watui.engines.hosts")
    fd_in, fd_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    # Ctrl-C in the terminal reaches the whole process group: watui stops its hosts itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    host = Host(EngineSpec.loads(spec), fd_in, fd_out)
    try:
        asyncio.run(host.serve())
    finally:
        sys.stderr.flush()
        # Go's threads (a dial can hang for a minute) must not keep the process alive.
        os._exit(0)
